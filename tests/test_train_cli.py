"""`dfpanel train` / `dfpanel curriculum` argument handling: user mistakes are one line, exit 2."""

from __future__ import annotations

import pytest
from factories import cache_on_disk

from dfpanel.cli import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return cache_on_disk(tmp_path_factory.mktemp("cache"), counts={"train": (1, 1), "val": (1, 1)}, n_frames=4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--config", "cm/tiny_ffpp"], "no face-track cache given"),
        (["train", "--config", "cm/tiny_ffpp", "--data", "{tmp}"], "not a face-track cache"),
        (["train", "--config", "cm/nope", "--data", "{cache}"], "no such config file or preset"),
        (["train", "--config", "cm/tiny_ffpp", "--data", "{cache}", "--wat"], "unexpected argument '--wat'"),
        (["train", "--config", "cm/tiny_ffpp", "--data", "{cache}", "--resume", "--out", "{tmp}/none"],
         "nothing to resume"),
        (["train", "--config", "cm/tiny_ffpp", "--data", "{cache}", "--out", "{tmp}/r", "data.dataset=celebdf"],
         "no 'train' videos to train on"),
        (["curriculum", "-s", "cm", "--data", "{cache}", "--out", "{tmp}/c", "--stages", "ffpp,wild"],
         "choose from ffpp, celebdf, dfdc"),
        (["curriculum", "-s", "cm", "--data", "{cache}", "--out", "{tmp}/c", "--manifests", "{tmp}"],
         "no manifest for stage ffpp"),
        (["curriculum", "-s", "cm", "--data", "{cache}", "--out", "{tmp}/c", "--preset", "huge"],
         "--preset must be tiny or full"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, message, cache, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, cache=cache) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
