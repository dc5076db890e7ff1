"""``openimagen encode-text`` (cli/encode_text.py): the cache fills, then hits."""

from __future__ import annotations

from cli_testutil import run


def test_encode_text_fills_the_cache_then_hits_it(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red circle"}\n\n{"prompt": "a blue square"}\n')
    args = ["encode-text", "--prompts", str(prompts), "--cache", str(tmp_path / "cache"), "-q"]
    code, out, _ = run(args, capsys)
    assert code == 0 and out.startswith("2 new, 0 already cached")
    code, out, _ = run(args + ["a green triangle"], capsys)
    assert code == 0 and out.startswith("1 new, 2 already cached")


def test_encode_text_bad_jsonl_names_the_line(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    code, _, err = run(
        ["encode-text", "--prompts", str(prompts), "--cache", str(tmp_path / "c")], capsys
    )
    assert code == 2 and "line 2" in err and '"prompt" field' in err
