"""./run: which interpreter it installs into, and what it does about torch.

The rules (module docstring of `run`): an explicit or activated virtual/conda environment is used
as it is; otherwise the project's .venv, inheriting the base interpreter's torch when it has one;
a torch that is there is never replaced; the CPU build only when there is no torch and no GPU.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOOR = "2.5"


def _load_run():
    loader = importlib.machinery.SourceFileLoader("vidprune_run_script", str(REPO / "run"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up while it executes
    loader.exec_module(module)
    return module


run = _load_run()


def facts(executable="/usr/bin/python3", torch=None, venv=False, conda=False, version=(3, 11, 2)):
    return {
        "executable": executable,
        "version": list(version),
        "prefix": str(Path(executable).parent.parent),
        "is_venv": venv,
        "is_conda": conda,
        "externally_managed": not (venv or conda),
        "torch": torch,
        "pip": "24.0",
        "vidprune_url": None,
    }


def decide(env, by_python, gpu=False, venv=None):
    return run.decide(env, by_python.__getitem__, gpu, FLOOR, "/usr/bin/python3", venv)


# ---- decisions -------------------------------------------------------------------------------
def test_stock_machine_gets_an_isolated_venv_and_the_cpu_build(tmp_path):
    plan = decide({}, {"/usr/bin/python3": facts()}, venv=tmp_path / ".venv")
    assert plan.source == "new .venv" and plan.create_venv_from == "/usr/bin/python3"
    assert plan.python == str(tmp_path / ".venv" / "bin" / "python")
    assert not plan.system_site_packages and plan.torch == "cpu"


def test_gpu_without_torch_lets_pip_take_the_index_build(tmp_path):
    plan = decide({}, {"/usr/bin/python3": facts()}, gpu=True, venv=tmp_path / ".venv")
    assert plan.torch == "index"


def test_base_torch_is_inherited_not_replaced(tmp_path):
    base = {"/opt/py/bin/python3": facts("/opt/py/bin/python3", torch="2.7.1+cu128")}
    plan = decide({"PYTHON": "/opt/py/bin/python3"}, base, gpu=True, venv=tmp_path / ".venv")
    assert plan.create_venv_from == "/opt/py/bin/python3" and plan.system_site_packages
    assert (plan.torch, plan.torch_version) == ("keep", "2.7.1+cu128")


def test_base_torch_below_the_floor_is_ignored_for_a_new_venv(tmp_path):
    plan = decide({}, {"/usr/bin/python3": facts(torch="1.13.1")}, venv=tmp_path / ".venv")
    assert not plan.system_site_packages and plan.torch == "cpu"
    assert any("1.13.1" in note for note in plan.notes)


@pytest.mark.parametrize("kind", ["venv", "conda"])
def test_python_pointing_at_an_environment_uses_it_as_it_is(tmp_path, kind):
    py = "/home/me/env/bin/python"
    env_facts = facts(py, torch="2.13.0+cu130", **{kind: True})
    plan = decide({"PYTHON": py}, {py: env_facts}, venv=tmp_path / ".venv")
    assert (plan.python, plan.source, plan.create_venv_from) == (py, "PYTHON", None)
    assert (plan.torch, plan.torch_version) == ("keep", "2.13.0+cu130")


def test_activated_virtualenv_is_used_with_its_torch(tmp_path):
    active = tmp_path / "myenv"
    (active / "bin").mkdir(parents=True)
    (active / "bin" / "python").touch()
    py = str(active / "bin" / "python")
    plan = decide({"VIRTUAL_ENV": str(active)}, {py: facts(py, torch="2.6.0", venv=True)}, gpu=True)
    assert (plan.python, plan.source, plan.torch) == (py, "VIRTUAL_ENV", "keep")


def test_python_pointing_at_a_system_interpreter_makes_a_venv_from_it(tmp_path):
    plan = decide({"PYTHON": "/usr/bin/python3"}, {"/usr/bin/python3": facts()}, venv=tmp_path)
    assert plan.create_venv_from == "/usr/bin/python3" and plan.source == "new .venv"


def test_existing_project_venv_is_reused(tmp_path):
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    py = str(venv / "bin" / "python")
    plan = decide({}, {py: facts(py, torch="2.13.0+cpu", venv=True)}, venv=venv)
    assert (plan.source, plan.create_venv_from, plan.torch) == (".venv", None, "keep")


def test_old_torch_in_your_environment_is_an_error_not_a_replacement(tmp_path):
    py = "/home/me/env/bin/python"
    with pytest.raises(run.SetupError, match=r"torch 2\.3\.1 .*torch>=2\.5.*never replaces"):
        decide({"PYTHON": py}, {py: facts(py, torch="2.3.1", venv=True)}, venv=tmp_path)


def test_old_python_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(run.SetupError, match=r"Python 3\.10\.12.*>= 3\.11.*PYTHON=python3\.11"):
        decide({}, {"/usr/bin/python3": facts(version=(3, 10, 12))}, venv=tmp_path / ".venv")


def test_version_tuple_and_floor():
    assert run.version_tuple("2.13.0+cu121") == (2, 13, 0)
    assert run.version_tuple("2.5.0rc1") == (2, 5, 0)
    assert run.version_tuple("2.4.1") < run.version_tuple("2.5")
    assert run.torch_floor(REPO / "pyproject.toml") == FLOOR


def test_newest_stable_pip_wheel_from_a_pep503_page():
    page = (
        '<a href="../../packages/pip-9.0.1-py3-none-any.whl#sha256=' + "a" * 64 + '">x</a>'
        '<a href="../../packages/pip-24.2-py3-none-any.whl#sha256=' + "b" * 64 + '">x</a>'
        '<a href="../../packages/pip-25.0b1-py3-none-any.whl#sha256=' + "c" * 64 + '">x</a>'
        '<a href="../../packages/pip-24.2.tar.gz#sha256=' + "d" * 64 + '">x</a>'
    )
    url, sha = run.newest_pip_wheel(page, "https://pypi.org/simple/pip/")
    assert url == "https://pypi.org/packages/pip-24.2-py3-none-any.whl" and sha == "b" * 64
    assert run.newest_pip_wheel("<a href='pip-1.0.tar.gz'>", "https://x/simple/pip/") is None


# ---- install: what pip is asked to do ---------------------------------------------------------
def _fake_install(
    monkeypatch, torch_before, plan_torch, local_wheel=True, prefix="/nonexistent/p", extras="hf"
):
    calls = []
    state = {"torch": torch_before, "url": None}

    def fake_probe(python):
        found = facts(python, torch=state["torch"], venv=True)
        return {**found, "prefix": str(prefix), "vidprune_url": state["url"]}

    def fake_pip(python, args, quiet_ok=False):
        calls.append(list(args))
        if any(a.startswith("torch==") for a in args):
            if "--no-index" in args and not local_wheel:
                return False
            state["torch"] = run.CPU_TORCH + "+cpu"
        if "-c" in args:
            calls.append(Path(args[args.index("-c") + 1]).read_text())
        if "-e" in args:
            state["url"] = run.ROOT.as_uri()
        return True

    monkeypatch.setattr(run, "probe", fake_probe)
    monkeypatch.setattr(run, "pip_install", fake_pip)
    plan = run.Plan("/env/bin/python", "PYTHON", torch=plan_torch, torch_version=torch_before)
    run.install(plan, {"EXTRAS": extras})
    return calls, plan, state


def test_install_pins_the_torch_that_is_there(monkeypatch):
    calls, _, _ = _fake_install(monkeypatch, "2.13.0+cu130", "keep")
    assert not any(a.startswith("torch==") for c in calls if isinstance(c, list) for a in c)
    assert calls[0][:2] == ["-e", f"{run.ROOT}[dev,hf]"]
    assert calls[1] == "torch==2.13.0+cu130\n"  # the constraint file: pip may not swap torch


def test_install_cpu_build_local_wheel_first_then_the_cpu_index(monkeypatch):
    calls, _, _ = _fake_install(monkeypatch, None, "cpu", local_wheel=True)
    assert calls[0] == ["--no-index", "--no-deps", f"torch=={run.CPU_TORCH}"]
    assert calls[2] == f"torch=={run.CPU_TORCH}+cpu\n"
    calls, _, _ = _fake_install(monkeypatch, None, "cpu", local_wheel=False)
    assert calls[1] == [f"torch=={run.CPU_TORCH}", "--index-url", run.TORCH_INDEX_URL]


def test_second_run_skips_install_until_pyproject_or_extras_change(monkeypatch, tmp_path):
    calls, plan, state = _fake_install(monkeypatch, "2.13.0+cpu", "keep", prefix=tmp_path)
    assert calls and (tmp_path / run.STAMP).is_file()
    calls.clear()
    run.install(plan, {"EXTRAS": "hf"})
    run.install(plan, {})  # fewer extras than installed: nothing to do
    assert calls == []
    run.install(plan, {"EXTRAS": "notebook"})  # a new extra: installed with the earlier ones
    assert calls[0][:2] == ["-e", f"{run.ROOT}[dev,hf,notebook]"]
    calls.clear()
    state["url"] = "file:///another/clone"  # the env's editable install points elsewhere
    run.install(plan, {})
    assert calls and calls[0][0] == "-e"


def test_bad_extra_is_rejected():
    with pytest.raises(run.SetupError, match="EXTRAS="):
        run.extras({"EXTRAS": "hf; rm -rf /"})
    assert run.extras({"EXTRAS": "notebook, hf"}) == ["dev", "hf", "notebook"]


# ---- the script end to end on real interpreters (`plan` changes nothing) ----------------------
def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(REPO / "run", root / "run")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _env_with_torch(tmp_path: Path, version: str | None) -> Path:
    """A real virtual environment (no pip, seconds to make) whose metadata lists `torch`."""
    env = tmp_path / f"env-{version}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    if version:
        site = next(env.glob("lib/python3*/site-packages"))
        info = site / f"torch-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    return env / "bin" / "python"


def _plan(root: Path, tmp_path: Path, gpu: bool, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: Fake H100 (UUID: GPU-0)'\n" if gpu else "#!/bin/sh\nexit 9\n"
    )
    smi.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    clean["PATH"] = f"{bin_dir}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, str(root / "run"), "plan"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_script_keeps_the_cuda_torch_of_the_environment_you_point_at(tmp_path):
    root = _project(tmp_path)
    py = _env_with_torch(tmp_path, "2.13.0+cu130")
    out = _plan(root, tmp_path, gpu=True, PYTHON=str(py))
    assert out.returncode == 0, out.stderr
    assert "(PYTHON)" in out.stdout and "keep 2.13.0+cu130" in out.stdout
    out = _plan(root, tmp_path, gpu=False, VIRTUAL_ENV=str(py.parent.parent))
    assert "(VIRTUAL_ENV)" in out.stdout and "keep 2.13.0+cu130" in out.stdout
    assert not (root / ".venv").exists()


def test_script_chooses_cpu_or_index_torch_by_the_gpu(tmp_path):
    root = _project(tmp_path)
    py = _env_with_torch(tmp_path, None)
    assert "CPU build torch==2.13.0" in _plan(root, tmp_path, gpu=False, PYTHON=str(py)).stdout
    assert "a GPU is visible" in _plan(root, tmp_path, gpu=True, PYTHON=str(py)).stdout


def test_script_refuses_an_old_torch_with_the_fix(tmp_path):
    root = _project(tmp_path)
    py = _env_with_torch(tmp_path, "2.4.1")
    out = _plan(root, tmp_path, gpu=True, PYTHON=str(py))
    assert out.returncode == 1
    assert "torch 2.4.1" in out.stderr and "Fix:" in out.stderr
