"""What a reader meets describes the code as it is: no notebook, library or benchmark source,
test or README refers to the project's own history (issue numbers, earlier versions of a file),
which a reader cannot look up. Where the original code matters, the text names the authors'
repository instead."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("notebooks/*.md", "coldrec_lib/**/*.py", "benchmarks/**/*.py", "tests/**/*.py",
         "README.md")
HISTORY = re.compile("|".join([
    r"\bissues? #?\d+",
    r"seed notebook",
    r"issue's author",
    r"earlier version",
    r"previous version",
    r"old(er)? batch builder",
]), re.IGNORECASE)


def history_lines():
    for pattern in FILES:
        for path in sorted(ROOT.glob(pattern)):
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if HISTORY.search(line):
                    yield f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_the_pattern_finds_history_words():
    for line in ("fixed in issue 8", "(Issue #12)", "the seed notebook's run",
                 "An earlier version of this preset", "the older batch builder"):
        assert HISTORY.search(line), line
    assert not HISTORY.search("an earlier run in --out; the issue of cold start")


def test_no_project_history_in_notebooks_sources_and_readme():
    found = list(history_lines())
    assert not found, "project history a reader cannot look up:\n" + "\n".join(found)
