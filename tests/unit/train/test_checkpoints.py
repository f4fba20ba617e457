from pathlib import Path

from tunesmith.train.runner import last_complete_checkpoint


def test_a_partly_written_checkpoint_is_skipped(tmp_path: Path) -> None:
    for step, state in ((3, '{"global_step": 3}'), (6, '{"global_st'), (9, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert last_complete_checkpoint(tmp_path / "missing") is None
