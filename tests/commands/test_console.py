"""The ``detkit`` console script as a user runs it: the overview without heavy imports, and no
Lightning warning about how detkit builds its parser on the small commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tiny import tiny_module, write_checkpoint
from detkit.commands import OWN_SUBCOMMANDS, SUMMARIES

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "configs" / "shapes.yaml"
SMALL_DATA = ["--data.train.init_args.num_images", "4", "--data.val.init_args.num_images", "2",
              "--data.test.init_args.num_images", "2", "--data.num_workers", "0"]  # fmt: skip


def _detkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    script = "import sys; from detkit.commands import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_help_lists_every_subcommand_without_importing_torch_or_lightning():
    assert set(OWN_SUBCOMMANDS) | {"fit", "validate", "test", "predict"} == set(SUMMARIES)
    script = (
        "import sys; from detkit.commands import main; code = main(['--help']); "
        "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'albumentations', 'torchvision') if m in sys.modules)); "
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    for name in SUMMARIES:
        assert f"  {name} " in done.stdout


def test_bare_detkit_is_a_usage_error_with_the_overview_on_stderr():
    done = _detkit()
    assert done.returncode == 2
    assert done.stdout == ""
    assert "subcommands:" in done.stderr and "  fit " in done.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tiny_module(), tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.mark.parametrize("command", ["check-data", "evaluate", "explain", "export"])
def test_small_commands_emit_no_args_parameter_warning(command, checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (120, 60, 30)).save(images / "a.png")
    argv = {
        "check-data": ["--config", str(SHAPES), *SMALL_DATA],
        "evaluate": ["--ckpt_path", str(checkpoint), "--config", str(SHAPES), *SMALL_DATA],
        "explain": ["--ckpt_path", str(checkpoint), "--image", str(images), "--out", str(tmp_path / "explain")],
        "export": ["--ckpt_path", str(checkpoint), "--format", "torchscript", "--out", str(tmp_path / "export")],
    }[command]
    done = _detkit(command, *argv)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "args parameter" not in done.stderr, done.stderr[-3000:]
