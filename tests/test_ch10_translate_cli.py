"""Chapter 10's `main.py --translate FILE --out DIR`: one French line per English line from a
saved model, and a clear error when DIR holds none (the chapter's quick run is in
test_chapters_quick.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinytorch as tt
from tinytorch.data.translation import train_joint_bpe

pytestmark = pytest.mark.ch10

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "10_translation"
PAIRS = [("I am cold.", "J'ai froid."), ("Tom is here.", "Tom est ici."), ("Go.", "Va !")]


def _translate_module():
    spec = importlib.util.spec_from_file_location("_ch10_translate", CHAPTER / "translate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(*args, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(CHAPTER / "main.py"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_translate_prints_one_line_per_input_line(tmp_path):
    T = _translate_module()
    tok = train_joint_bpe(PAIRS * 10, 300)
    tok.save(tmp_path / T.TOKENIZER_FILE)
    kw = dict(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
              dim_feedforward=32, dropout=0.0, max_len=24, share_embeddings=True,
              tie_weights=True)  # fmt: skip
    tt.manual_seed(0)
    model = T.build_model("transformer", tok, kw)
    T.save_model(tmp_path, "transformer", model, kw)
    loaded, tok2 = T.load_model(tmp_path)
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert (a.detach().numpy() == b.detach().numpy()).all()
    lines = ["I am cold.", "", "Tom is here, and he is cold."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = T.translate(loaded, tok2, lines, beam_size=4)
    assert expected[1] == ""  # an empty line stays empty
    proc = _run("--translate", src, "--out", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:-1] == expected  # one line each, beam search by default
    greedy = _run("--translate", src, "--out", tmp_path, "--beam", "1", cwd=tmp_path)
    assert greedy.stdout.split("\n")[:-1] == T.translate(loaded, tok2, lines, beam_size=1)


def test_translate_without_a_model_says_how_to_get_one(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Hello.\n")
    proc = _run("--translate", src, "--out", tmp_path / "empty", cwd=tmp_path)
    assert proc.returncode != 0
    assert "holds no trained transformer" in proc.stderr
    assert "transformer.safetensors" in proc.stderr and "course run 10" in proc.stderr
    assert proc.stdout == ""
