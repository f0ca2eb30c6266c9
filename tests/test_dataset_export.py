"""Export to a data-only Hub folder: Parquet + card that `datasets.load_dataset` reads back bit for bit."""

import datasets
import pytest
import yaml

from dataset_script import load_mosi
from dataset_script.__main__ import main
from dataset_script.export import export_to_folder
from helpers import MOSI_TEXT


pytestmark = pytest.mark.skipif(not MOSI_TEXT.is_dir(), reason=f"MOSI transcripts not found at {MOSI_TEXT}")


def test_export_round_trip_is_bit_identical(tmp_path):
    out = export_to_folder(tmp_path / "hub", configs=["text", "synthetic"], data_dir={"text": str(MOSI_TEXT)}, cache_dir=tmp_path / "c")
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in front["configs"]] == ["synthetic", "text"]
    assert {"split": "validation", "path": "text/validation-00000-of-00001.parquet"} in front["configs"][1]["data_files"]
    assert [s["num_examples"] for s in front["dataset_info"][1]["splits"]] == [1284, 229, 686]
    assert "Zadeh" in card and "10.1145/3394171.3413690" in card and "terms of the original" in card
    for config in ("text", "synthetic"):
        built = datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "reload"))
        source = load_mosi(config, data_dir=MOSI_TEXT if config == "text" else None, cache_dir=tmp_path / "c")
        assert list(built) == list(source) == ["train", "validation", "test"]
        for split in source:
            assert built[split].features == source[split].features
            for column in source[split].column_names:
                assert built[split].data.table.column(column).equals(source[split].data.table.column(column)), (config, split, column)


def test_cli_export_and_load(tmp_path, capsys):
    main(["export", "--config", "text", "--data-dir", str(MOSI_TEXT), "--out", str(tmp_path / "hub"), "--cache-dir", str(tmp_path / "c")])
    assert sorted(p.name for p in (tmp_path / "hub" / "text").iterdir()) == [f"{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")]
    main(["load", "--config", "synthetic", "--option", "train_size=7", "--cache-dir", str(tmp_path / "c")])
    assert "num_rows: 7" in capsys.readouterr().out


def test_failed_export_leaves_the_previous_export_as_it_was(tmp_path):
    out = export_to_folder(tmp_path / "hub", configs=["text"], data_dir=str(MOSI_TEXT), cache_dir=tmp_path / "c")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # The synthetic config builds, then `cmbert` fails (no pickle): nothing of the new export may land.
    with pytest.raises(FileNotFoundError, match="MOSI_cmu_audio_CLS.pickle not found"):
        export_to_folder(out, configs=["synthetic", "cmbert"], data_dir=str(MOSI_TEXT), cache_dir=tmp_path / "c")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "hub"]  # no staging folder left behind
