"""training/checkpoint.py is the one reader of the checkpoint format (issue 21, item 5): fit, evaluate
(training.models.load_checkpoint) and export all get its CheckpointError lines for a file that is not one."""
from __future__ import annotations

import pytest
import torch

from training import checkpoint
from training.models import load_checkpoint


def test_read_gives_the_dict_fit_saved(tmp_path):
    state = {"meta": {"name": "m"}, "state_dict": {"w": torch.ones(2)}, "epoch": 3}
    checkpoint.save_atomic(state, tmp_path / "c.pt")
    read = checkpoint.read(tmp_path / "c.pt")
    assert read["epoch"] == 3 and read["meta"] == {"name": "m"} and torch.equal(read["state_dict"]["w"],
                                                                                 torch.ones(2))


@pytest.mark.parametrize("content, expected", [
    (None, "checkpoint not found"),
    (b"not a zip", "not a readable torch checkpoint"),
    ({"state_dict": {}}, "'meta' and 'state_dict' dicts, found ['state_dict']"),
    ([1, 2], "found list"),
])
def test_what_is_not_a_checkpoint_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "c.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    for reader in (checkpoint.read, load_checkpoint):
        with pytest.raises(checkpoint.CheckpointError) as caught:
            reader(path)
        assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)
