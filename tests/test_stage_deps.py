"""Every stage reruns when code it runs changes: its dvc.yaml `deps` cover each file of the package its
script imports (directly or through other modules, imports inside functions included)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from captioning.code_deps import imported_files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "captioning"     # this checkout's package, whichever one is installed


def stage_scripts(pipeline: dict) -> dict[str, Path]:
    scripts = {}
    for name, stage in pipeline["stages"].items():
        match = re.match(r"python (stages/\w+\.py)", stage["cmd"])
        assert match, f"stage {name}: its cmd does not run a stages/*.py script: {stage['cmd']}"
        scripts[name] = ROOT / match.group(1)
    return scripts


def uncovered(pipeline: dict) -> list[str]:
    """'stage: file' for each file a stage's script runs that none of its deps names (itself or a folder above)."""
    problems = []
    for name, script in stage_scripts(pipeline).items():
        deps = [str(d).rstrip("/") for d in pipeline["stages"][name].get("deps", [])]
        for file in imported_files(script, PACKAGE):
            rel = file.relative_to(ROOT).as_posix()
            if not any(rel == d or rel.startswith(d + "/") for d in deps):
                problems.append(f"{name}: dvc.yaml does not cover {rel}")
    return problems


def load_pipeline() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_stage_depends_on_every_module_it_runs():
    problems = uncovered(load_pipeline())
    assert not problems, "add these to the stage's deps in dvc.yaml:\n" + "\n".join(problems)


def test_a_removed_dependency_is_named_with_its_stage():
    pipeline = load_pipeline()
    deps = pipeline["stages"]["decode"]["deps"]
    pipeline["stages"]["decode"]["deps"] = [d for d in deps if d != "src/captioning/decode"]
    problems = uncovered(pipeline)
    assert "decode: dvc.yaml does not cover src/captioning/decode/beam.py" in problems, problems
    assert all(p.startswith("decode: ") for p in problems), problems


def test_imports_inside_functions_count():
    """vit_gpt2's trainer is imported only when train.decoder is vit_gpt2; it is still code train runs."""
    files = {f.relative_to(ROOT).as_posix() for f in imported_files(ROOT / "stages" / "train.py", PACKAGE)}
    assert "src/captioning/hf/train.py" in files and "src/captioning/text/tokenizer.py" in files
