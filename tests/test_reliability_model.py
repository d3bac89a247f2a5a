"""A model folder is untrusted input: each attack on a copy of a shipped bundle is refused
with an error naming the folder, the field and the problem, never a hang or a traceback.

The attacker controls every file of the folder, hashes included: where a test tampers with
an atlas it also recomputes the card's hash, so what stops the attack is the check under
test, not a hash mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from napari_paraspinal.models import MODELS_DIR
from safetensors.torch import load_file, save_file

from napari_paraspinal.cli import main
from napari_paraspinal.core.bundlefiles import BundleError
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.nets.bundle import (
    CARD,
    MAX_CARD_BYTES,
    WEIGHTS,
    ModelCard,
    atlas_hashes,
    load_bundle,
    load_card,
    save_bundle,
)
from napari_paraspinal.nets.segmenter import Segmenter, SegmenterConfig
from napari_paraspinal.preprocess.atlas import Atlas, load_atlases
from napari_paraspinal.segment import load_model

SHIPPED = MODELS_DIR / "paraspinal-phantom-t2w"  # the one with a CRF (and the smaller one)
IMAGE = "atlases/L4-L5/image.nii.gz"
ATLAS_JSON = "atlases/L4-L5/atlas.json"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SHIPPED, tmp_path / "model"))


def card_of(folder: Path) -> dict:
    return json.loads((folder / CARD).read_text())


def write_card(folder: Path, card: dict) -> None:
    (folder / CARD).write_text(json.dumps(card, indent=2))


def rehash(folder: Path, rel: str) -> None:
    """Recompute one file's hash in the card, as an attacker would."""
    card = card_of(folder)
    card["files_sha256"][rel] = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
    write_card(folder, card)


def set_field(folder: Path, path: str, value: object) -> None:
    card = card_of(folder)
    *parents, last = path.split(".")
    node = card
    for key in parents:
        node = node[key]
    node[last] = value
    write_card(folder, card)


def refused(folder: Path, field: str, problem: str) -> BundleError:
    """load_bundle and load_model both refuse ``folder`` with a BundleError naming it, the
    field and the problem."""
    with pytest.raises(BundleError) as info:
        load_bundle(folder)
    err = info.value
    assert isinstance(err, InputError)
    assert str(folder) in str(err) and field in str(err) and problem in str(err), str(err)
    with pytest.raises(BundleError, match=re.escape(problem)):
        load_model(folder, device="cpu")
    return err


def test_the_untampered_copy_loads(bundle: Path) -> None:
    # what the attacks below change is all that makes them fail
    model = load_model(bundle, device="cpu")
    assert model.card.name == "paraspinal-phantom-t2w" and set(model.atlases) == {"L4-L5",
                                                                               "L5-S1"}
    assert IMAGE in model.card.files_sha256 and ATLAS_JSON in model.card.files_sha256
    with pytest.raises(AttributeError):
        model.card.weights_sha256 = ""  # a checked card is frozen


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("network.crf.iterations", 1e9, "must be an integer"),
    ("network.crf.iterations", 10**9, "from 1 to 50"),
    ("network.crf.iterations", -1, "from 1 to 50"),
    ("network.crf.iterations", "6", "must be an integer"),
    ("network.crf.iterations", True, "must be an integer"),
    ("network.crf.theta_alpha", math.nan, "from 1 to 256"),
    ("network.crf.theta_alpha", math.inf, "from 1 to 256"),
    ("network.crf.grid_spatial_cell", 1e-6, "from 0.1 to 2"),
    ("network.unet.base_width", 10**6, "from 1 to 128"),
    ("network.unet.num_classes", 3, "from 9 to 9"),
    ("network.use_crf", "yes", "must be one of"),
    ("preprocessing.n4.iterations", [10**9], "from 1 to 1000"),
    ("preprocessing.n4.shrink", 0, "from 1 to 16"),
    ("preprocessing.n4.histogram_bins", 1e12, "must be an integer"),
    ("preprocessing.registration.iterations", 10**12, "from 1 to 10000"),
    ("preprocessing.registration.rotation_starts_deg", [0.0] * 1000, "list of 1 to 64"),
    ("preprocessing.normalize.high_percentile", 1e300, "from 0 to 100"),
    ("preprocessing.postprocess", "rm -rf", "must be one of"),
])
def test_absurd_numbers_and_wrong_types_are_refused(bundle, field, value, problem) -> None:
    set_field(bundle, field, value)
    err = refused(bundle, field, problem)
    assert err.field.removesuffix("[0]") == f"card.json {field}"


def test_fields_that_only_clash_together_are_refused(bundle) -> None:
    set_field(bundle, "network.crf.theta_alpha", 1.0)  # 0.5 pixel grid cells: memory
    refused(bundle, "network.crf", "at least 2 pixels")
    shutil.rmtree(bundle)
    shutil.copytree(SHIPPED, bundle)
    set_field(bundle, "preprocessing.normalize.clip_high", None)  # unbounded CRF grid
    refused(bundle, "preprocessing.normalize", "clipped")
    shutil.rmtree(bundle)
    shutil.copytree(SHIPPED, bundle)
    set_field(bundle, "preprocessing.n4.control_points", 2)  # not above spline_order 3
    refused(bundle, "preprocessing", "control_points")


@pytest.mark.parametrize("field", ["name", "network", "weights_sha256", "files_sha256",
                                   "format"])
def test_missing_fields_are_refused(bundle, field) -> None:
    card = card_of(bundle)
    del card[field]
    write_card(bundle, card)
    refused(bundle, field, "is missing")


def test_unknown_fields_and_wrong_shapes_are_refused(bundle) -> None:
    set_field(bundle, "network.unet.depth", 12)
    refused(bundle, "network.unet", "unknown field(s) ['depth']")
    write_card(bundle, card_of(SHIPPED) | {"network": [1, 2]})
    refused(bundle, "network", "must be a JSON object")
    write_card(bundle, card_of(SHIPPED) | {"name": 7})
    refused(bundle, "name", "must be a string")
    write_card(bundle, card_of(SHIPPED) | {"name": "model\x1b[2J"})
    refused(bundle, "name", "control characters")


def test_empty_hash_and_zeroed_weights_are_refused(bundle) -> None:
    zeros = {k: torch.zeros_like(v) for k, v in load_file(str(bundle / WEIGHTS)).items()}
    save_file(zeros, str(bundle / WEIGHTS))
    set_field(bundle, "weights_sha256", "")  # used to switch the check off
    refused(bundle, "weights_sha256", "must be the weights' SHA-256")
    set_field(bundle, "weights_sha256", card_of(SHIPPED)["weights_sha256"])
    refused(bundle, WEIGHTS, "do not match the card's SHA-256")
    # even with its own hash, an all-zero network is no model
    set_field(bundle, "weights_sha256", hashlib.sha256((bundle / WEIGHTS).read_bytes())
              .hexdigest())
    refused(bundle, WEIGHTS, "every weight is zero")


def test_atlas_files_are_hashed(bundle) -> None:
    shutil.copy(bundle / "atlases/L5-S1/image.nii.gz", bundle / IMAGE)
    refused(bundle, IMAGE, "does not match its SHA-256")
    shutil.copy(SHIPPED / IMAGE, bundle / IMAGE)
    card = card_of(bundle)
    card["files_sha256"][IMAGE] = ""  # no skipping a file either
    write_card(bundle, card)
    refused(bundle, IMAGE, "must be a SHA-256")
    card["files_sha256"] = {}
    write_card(bundle, card)
    refused(bundle, "atlases/L4-L5/atlas.json", "is not listed")


def test_atlases_can_be_checked_as_they_are_read(bundle) -> None:
    hashes = atlas_hashes(load_card(bundle))
    assert set(load_atlases(bundle / "atlases", hashes)) == {"L4-L5", "L5-S1"}
    shutil.copy(bundle / "atlases/L5-S1/image.nii.gz", bundle / IMAGE)  # after the check
    with pytest.raises(BundleError, match="does not match its SHA-256"):
        load_atlases(bundle / "atlases", hashes)
    with pytest.raises(BundleError, match="not listed"):
        load_atlases(bundle / "atlases", {})


def test_an_atlas_slipped_in_beside_the_hashed_ones_is_refused(bundle) -> None:
    shutil.copytree(bundle / "atlases/L4-L5", bundle / "atlases/L3-L4")
    meta = json.loads((bundle / "atlases/L3-L4/atlas.json").read_text())
    (bundle / "atlases/L3-L4/atlas.json").write_text(json.dumps({**meta, "level": "L3-L4"}))
    refused(bundle, "atlases/L3-L4/atlas.json", "is not listed")


@pytest.mark.parametrize(("name", "problem"), [
    ("../../../../../../etc/passwd", "leads out of the folder"),
    ("../L5-S1/image.nii.gz", "leads out of the folder"),
    ("/etc/passwd", "absolute path"),
    ("C:\\Windows\\win.ini", "absolute path"),
    ("", "must be a relative file name"),
])
def test_atlas_names_leading_out_of_the_folder_are_refused(bundle, name, problem) -> None:
    meta = json.loads((bundle / ATLAS_JSON).read_text())
    meta["files"]["image"] = name
    (bundle / ATLAS_JSON).write_text(json.dumps(meta))
    rehash(bundle, ATLAS_JSON)
    refused(bundle, "files.image", problem)
    with pytest.raises(BundleError, match=re.escape(problem)):  # the atlas on its own too
        Atlas.load(bundle / "atlases/L4-L5")


def test_a_symlink_leading_out_is_refused_even_to_identical_bytes(bundle, tmp_path) -> None:
    outside = tmp_path / "elsewhere.nii.gz"
    shutil.copy(bundle / IMAGE, outside)
    (bundle / IMAGE).unlink()
    (bundle / IMAGE).symlink_to(outside)
    refused(bundle, IMAGE, "leads out of the folder")
    with pytest.raises(BundleError, match="leads out"):
        load_atlases(bundle / "atlases")


def test_a_symlinked_atlas_folder_leading_out_is_refused(bundle, tmp_path) -> None:
    shutil.move(bundle / "atlases/L5-S1", tmp_path / "L5-S1")
    (bundle / "atlases/L5-S1").symlink_to(tmp_path / "L5-S1", target_is_directory=True)
    refused(bundle, "L5-S1", "leads out of the folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_named_pipes_never_block_loading(bundle) -> None:
    # in a child process with a timeout: a FIFO opened for reading blocks until a writer comes
    script = textwrap.dedent("""
        import json, os, shutil, sys
        from pathlib import Path
        from napari_paraspinal.core.bundlefiles import BundleError
        from napari_paraspinal.preprocess.atlas import load_atlases
        from napari_paraspinal.segment import load_model
        src, out = Path(sys.argv[1]), {}
        for rel in ("atlases/L4-L5/image.nii.gz", "atlases/L4-L5/atlas.json",
                    "weights.safetensors", "card.json"):
            folder = src.with_name(rel.replace("/", "_"))
            shutil.copytree(src, folder)
            (folder / rel).unlink()
            os.mkfifo(folder / rel)
            for name, load in (("model", lambda: load_model(folder, device="cpu")),
                               ("atlases", lambda: load_atlases(folder / "atlases"))):
                try:
                    load()
                    out[f"{rel} {name}"] = "loaded"
                except BundleError as err:
                    out[f"{rel} {name}"] = str(err)
                except Exception as err:
                    out[f"{rel} {name}"] = f"{type(err).__name__}: {err}"
        print(json.dumps(out))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(bundle)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    for rel in ("atlases/L4-L5/image.nii.gz", "atlases/L4-L5/atlas.json",
                "weights.safetensors"):
        assert "is a named pipe, not a regular file" in out[f"{rel} model"], out
    assert "named pipe" in out["atlases/L4-L5/image.nii.gz atlases"], out
    assert "named pipe" in out["atlases/L4-L5/atlas.json atlases"], out
    assert "card.json: is a named pipe" in out["card.json model"], out


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting past the parser's depth
    (b"[1, 2, 3]", "must be a JSON object"),
    (b"", "not valid JSON"),
])
def test_a_card_that_is_not_a_json_object_is_refused(bundle, content, problem) -> None:
    (bundle / CARD).write_bytes(content)
    refused(bundle, CARD, problem)


def test_a_huge_card_is_refused_before_it_is_parsed(bundle) -> None:
    card = card_of(bundle)
    card["data"]["padding"] = "x" * MAX_CARD_BYTES
    write_card(bundle, card)
    assert (bundle / CARD).stat().st_size > MAX_CARD_BYTES
    refused(bundle, CARD, "more than the")


def test_the_cli_reports_a_tampered_model_without_a_traceback(bundle, tmp_path,
                                                              capsys) -> None:
    set_field(bundle, "network.crf.iterations", 1e9)
    rc = main(["segment", str(tmp_path / "any.nii.gz"), "--out", str(tmp_path / "out"),
               "--model", str(bundle), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "network.crf.iterations" in err and "Traceback" not in err, err


def test_written_bundles_hash_every_file_and_load(tmp_path) -> None:
    model = Segmenter(SegmenterConfig(unet={"base_width": 4}, use_crf=False))
    log = tmp_path / "training_log.csv"
    log.write_text("epoch,loss\n1,0.5\n")
    path = save_bundle(tmp_path / "new", model.state_dict(),
                       ModelCard(name="new", network=model.to_dict()),
                       extra_files={"atlases": MODELS_DIR / "atlases", log.name: log})
    card = load_card(path)
    written = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert sorted(card.files_sha256) == [p for p in written if p not in (CARD, WEIGHTS)]
    assert len(card.files_sha256) == 11 and len(card.weights_sha256) == 64
    for rel, digest in card.files_sha256.items():
        assert hashlib.sha256((path / rel).read_bytes()).hexdigest() == digest
    assert set(load_model(path, device="cpu").atlases) == {"L4-L5", "L5-S1"}


def test_a_writer_never_writes_a_card_a_reader_refuses(tmp_path) -> None:
    model = Segmenter(SegmenterConfig(unet={"base_width": 4}, crf={"iterations": 2}))
    network = {**model.to_dict(), "crf": {**model.to_dict()["crf"], "iterations": 10**6}}
    with pytest.raises(BundleError, match="network.crf.iterations"):
        save_bundle(tmp_path / "bad", model.state_dict(), ModelCard(name="bad",
                                                                    network=network))
    assert not any(tmp_path.iterdir())  # no bundle, no temporary folder left
