"""``openimagen serve`` (cli/serve.py): options, defaults, and refusals before serving."""

from __future__ import annotations

import pytest

from cli_testutil import call as run
from cli_testutil import parse
from openimagen.errors import ConfigError, InvalidArgumentError, ModelDirectoryError
from openimagen.serve.server import run_server as _real_run_server


def test_serve_options_and_defaults():
    args = parse(["serve"])
    assert (args.host, args.port, args.model, args.policy) == ("127.0.0.1", 8000, None, None)
    args = parse(["serve", "--model", "m", "--port", "0", "--policy", "p.txt", "--max-n", "2"])
    assert (args.model, args.port, args.policy, args.max_n) == ("m", 0, "p.txt", 2)
    with pytest.raises(SystemExit):
        parse(["serve", "--port", "70000"])


def test_serve_c2pa_options_reach_the_settings(monkeypatch):
    import openimagen.serve.server as server

    seen = {}
    monkeypatch.setattr(server, "run_server", lambda *a, **k: seen.update(k))
    run(["serve", "--c2pa-cert", "c.pem", "--c2pa-key", "k.pem", "--c2pa-include-prompt",
         "--c2pa-tsa-url", "http://tsa.example"])  # fmt: skip
    settings = seen["settings"]
    assert (settings.c2pa_cert, settings.c2pa_key) == ("c.pem", "k.pem")
    assert settings.c2pa_include_prompt and settings.c2pa_tsa_url == "http://tsa.example"
    run(["serve"])
    assert not seen["settings"].c2pa_include_prompt and seen["settings"].c2pa_cert is None


def test_serve_memory_options_reach_the_model_loader(monkeypatch, tmp_path):
    import torch

    import openimagen
    import openimagen.serve.server as server

    seen = {}
    monkeypatch.setattr(server, "run_server", lambda *a, **k: seen.update(k))
    run(["serve", "--dtype", "bf16", "--offload", "--text-device", "cpu"])
    assert seen["load_options"] == {"dtype": torch.bfloat16, "text_device": "cpu", "offload": True}
    run(["serve"])
    assert seen["load_options"] == {"dtype": None, "text_device": None, "offload": False}

    # and run_server hands them to openimagen.load (stopped there, before any serving)
    class Loaded(Exception):
        pass

    def fake_load(model_dir, **kwargs):
        seen["load"] = kwargs
        raise Loaded

    monkeypatch.setattr(openimagen, "load", fake_load)
    monkeypatch.setattr(server, "run_server", _real_run_server)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(Loaded):
        run(["serve", "--dtype", "fp16", "--offload", "--device", "cpu"])
    assert seen["load"] == {"device": "cpu", "dtype": torch.float16, "text_device": None,
                            "offload": True}  # fmt: skip


def test_serve_a_bad_certificate_fails_before_loading_the_model(tmp_path):
    with pytest.raises(InvalidArgumentError, match="c2pa certificate='.*nope.pem'"):
        run(["serve", "--c2pa-cert", str(tmp_path / "nope.pem"), "--c2pa-key", "k.pem"])


def test_serve_bad_input_raises_before_serving(tmp_path):
    with pytest.raises(ConfigError, match="max_batch_images"):
        run(["serve", "--model", str(tmp_path), "--max-n", "8", "--max-batch-images", "4"])
    with pytest.raises(ConfigError, match="nope.txt"):
        run(["serve", "--model", str(tmp_path), "--policy", str(tmp_path / "nope.txt")])
    with pytest.raises(ModelDirectoryError):
        run(["serve", "--model", str(tmp_path / "no-model"), "--device", "cpu"])


@pytest.mark.parametrize("blank", [" ", "\t\n"])
def test_a_blank_api_key_is_refused_not_taken_as_no_key(blank, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENIMAGEN_API_KEY", blank)
    with pytest.raises(InvalidArgumentError, match="OPENIMAGEN_API_KEY") as info:
        run(["serve", "--model", str(tmp_path / "no-model"), "--device", "cpu"])
    assert "unset" in str(info.value)
