#!/usr/bin/env bash
# Build the virtual environment RecBole 1.2.1 runs in, apart from coldrec's (RecBole needs
# numpy < 2, pandas < 3 and setuptools 79 for `pkg_resources`).
#
#   bash benchmarks/peers/build_recbole_venv.sh [VENV_DIR] [TORCH_SITE_PACKAGES]
#
# VENV_DIR defaults to benchmarks/peers/.venv-recbole (git-ignored). torch is not downloaded
# again when TORCH_SITE_PACKAGES (default: the site-packages of the python that runs coldrec,
# `python` on PATH) holds it: a .pth file appends that folder *after* the venv's own packages,
# so RecBole sees that torch with its own numpy < 2 and pandas < 3. Without it, torch==2.13.0
# is installed from PyPI. ray (RecBole's hyper-parameter tuning only) is left out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv-recbole}"
torch_site="${2:-$(python -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parents[1])' 2>/dev/null || true)}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "setuptools==79.*" "numpy<2" "pandas<3" scipy "scikit-learn<1.6" \
    "colorlog==4.7.2" "colorama==0.4.4" pyyaml tensorboard thop tabulate plotly texttable psutil
"$venv/bin/pip" install -q --no-deps "recbole==1.2.1"
if [ -n "$torch_site" ] && [ -d "$torch_site/torch" ]; then
    site="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
    echo "$torch_site" > "$site/zz_torch_from_coldrec.pth"
else
    "$venv/bin/pip" install -q "torch==2.13.0"
fi
"$venv/bin/python" -c "import numpy, pandas, torch, recbole; print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__)"
