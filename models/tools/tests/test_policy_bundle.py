"""Policy bundles (LeRobot ACT): exporter, manifest schema, goldens.

The reference numbers are LeRobot's own (`predict_action` -> `ACTPolicy.select_action` with the
checkpoint's processors); the code under test is the exported ONNX and the manifest-driven
stepper (policy_export/reference.py), which never calls LeRobot.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TOOLS

ACT_TEST = REPO / "models" / "act-test"
FP32_TOL = 1e-4


def _load_manifest(d: Path) -> dict:
    return tomllib.loads((d / "bundle.toml").read_text())


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny random ACT checkpoint (make_act_test_bundle's recipe, short episodes), exported."""
    import make_act_test_bundle as mk
    from policy_export import bundle as bundle_mod

    root = tmp_path_factory.mktemp("tiny_act")
    eps = [{**e, "frames": e["frames"][:40], "states": e["states"][:40], "actions": e["actions"][:40]}
           for e in mk.episodes()]
    ckpt = root / "ckpt"
    mk.build_checkpoint(eps, ckpt)
    (root / "limits.json").write_text(json.dumps(mk.limits(eps)))
    np.savez(root / "calib.npz", frames_top=np.stack([f["top"] for f in eps[0]["frames"]]), state=eps[0]["states"])
    out = root / "bundle"
    rc = bundle_mod.main(["--checkpoint", str(ckpt), "--out", str(out), "--fps", "50", "--limits",
                          str(root / "limits.json"), "--calibration-data", str(root / "calib.npz"),
                          "--camera-source", f"top={mk.SRC_W}x{mk.SRC_H}", "--action-units", mk.UNITS,
                          "--skip-tract-check"])
    assert rc == 0
    return {"ckpt": ckpt, "out": out, "episodes": eps}


def test_tiny_export_matches_lerobot_step_by_step(tiny_export):
    """ONNX fp32 + the manifest-driven stepper reproduce LeRobot's select_action within 1e-4,
    refills and ensembling counts included, in both of LeRobot's modes."""
    import make_act_test_bundle as mk
    from policy_export import goldens
    from policy_export.preprocess import CameraSpec
    from policy_export.reference import BundlePolicy

    cams = [CameraSpec("observation.images.top", "top", mk.MODEL_H, mk.MODEL_W, mk.SRC_H, mk.SRC_W)]
    ep = tiny_export["episodes"][1]
    for mode, kw in ((goldens.QUEUE, {"n_action_steps": 4}), (goldens.ENSEMBLE, {"coeff": 0.01})):
        policy, pre, post = goldens.load_mode(tiny_export["ckpt"], mode, kw.get("n_action_steps"), kw.get("coeff", 0.01))
        rec, _ = goldens.record_episode(policy, pre, post, cams, ep["frames"], ep["states"])
        bp = BundlePolicy(tiny_export["out"], "fp32", n_action_steps=kw.get("n_action_steps"),
                          temporal_ensemble_coeff=kw.get("coeff"))
        for t, (fr, st) in enumerate(zip(ep["frames"], ep["states"], strict=True)):
            a, ran = bp.step(fr, st)
            assert ran == bool(rec["model_ran"][t]), (mode, t)
            assert np.abs(a - rec["action"][t]).max() < FP32_TOL, (mode, t, np.abs(a - rec["action"][t]).max())
            if mode == goldens.ENSEMBLE:
                assert np.array_equal(bp.pre_consume_count, rec["ensemble_count"][t])
        if mode == goldens.QUEUE:
            assert rec["model_ran"].sum() == len(ep["states"]) // 4  # a refill every 4 steps
        else:
            assert rec["model_ran"].all()


def test_tiny_export_manifest_and_int8_structure(tiny_export):
    from policy_export import manifest as schema
    from policy_export.quantize import check_int8

    m = _load_manifest(tiny_export["out"])
    schema.validate(m, tiny_export["out"])
    assert m["policy"] == {"type": "act", "fps": 50.0, "chunk_size": 20, "n_action_steps": 10,
                           "stepper_space": "normalized", "latent": "zero"}
    img = m["observation"]["images"][0]
    assert (img["height"], img["width"], img["source_height"], img["source_width"]) == (36, 48, 42, 56)
    assert m["observation"]["state"]["normalization"]["mode"] == "MIN_MAX"
    assert m["action"]["normalization"]["mode"] == "MEAN_STD"
    s = check_int8(tiny_export["out"] / m["precision"]["int8"]["path"], {"Conv", "MatMul", "Gemm"})
    assert s["quantized"] == {"Conv": "13 of 13", "Gemm": "4 of 4", "MatMul": "22 of 22"}
    assert m["precision"]["int8"]["quantized_ops"] == ["Conv", "MatMul", "Gemm"]


def test_exporter_reports_bad_inputs(tmp_path, capsys, tiny_export):
    from policy_export import bundle as bundle_mod

    base = ["--out", str(tmp_path / "b"), "--fps", "50", "--limits", str(tmp_path / "l.json"),
            "--calibration-data", str(tmp_path / "c.npz")]
    assert bundle_mod.main(["--checkpoint", str(tmp_path / "missing")] + base) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "l.json").write_text(json.dumps({"lower": [0] * 3, "upper": [1] * 3, "max_step": [1] * 3}))
    assert bundle_mod.main(["--checkpoint", str(tiny_export["ckpt"])] + base) == 2
    assert "lower has 3 values, the action has 14" in capsys.readouterr().err


def test_committed_act_test_goldens_fp32_and_int8():
    """The committed bundle reproduces its committed LeRobot goldens from the raw inputs alone."""
    from policy_export.goldenio import read_golden
    from policy_export.reference import BundlePolicy

    if not (ACT_TEST / "golden" / "golden.json").is_file():
        pytest.skip("models/act-test not built (models/tools/make_act_test_bundle.py)")
    doc, arr = read_golden(ACT_TEST / "golden")
    tol8 = doc["tolerance"]["int8_action_abs"]
    for mode in doc["modes"]:
        for ep_meta, ep in zip(doc["episodes"], mode["episodes"], strict=True):
            frames = arr[ep_meta["frames"]["top"]]
            states = arr[ep_meta["state"]]
            gold = arr[ep["arrays"]["action"]]
            ran = arr[ep["arrays"]["model_ran"]]
            kw = ({"temporal_ensemble_coeff": mode["temporal_ensemble_coeff"]} if mode["temporal_ensemble_coeff"]
                  else {"n_action_steps": mode["n_action_steps"], "temporal_ensemble_coeff": None})
            for prec, tol in (("fp32", FP32_TOL), ("int8", tol8)):
                bp = BundlePolicy(ACT_TEST, prec, **kw)
                worst = 0.0
                for t in range(len(states)):
                    a, r = bp.step({"top": frames[t]}, states[t])
                    assert r == bool(ran[t]), (mode["name"], ep["episode"], prec, t)
                    worst = max(worst, float(np.abs(a - gold[t]).max()))
                assert worst < tol, (mode["name"], ep["episode"], prec, worst, tol)


def test_committed_act_test_chunks_and_ensembler_state():
    """Per model call the ONNX graph gives LeRobot's normalised chunk; the ensembling arrays are
    consistent with LeRobot's weights (entry 0 of the average is the returned action)."""
    from policy_export.goldenio import read_golden
    from sarm_export.onnx_utils import ort_session

    if not (ACT_TEST / "golden" / "golden.json").is_file():
        pytest.skip("models/act-test not built")
    m = _load_manifest(ACT_TEST)
    doc, arr = read_golden(ACT_TEST / "golden")
    sess = ort_session(ACT_TEST / m["precision"]["fp32"]["path"])
    act_norm = m["action"]["normalization"]
    for mode in doc["modes"]:
        for ep in mode["episodes"]:
            a = ep["arrays"]
            chunks, states = arr[a["chunk"]], arr[a["call_state_normalized"]]
            images = arr[a["call_image_normalized_top"]]
            for k in range(len(images)):  # the calls whose exact LeRobot inputs are stored
                got = sess.run(["action"], {"observation.state": states[k:k + 1],
                                            "observation.images.top": images[k:k + 1]})[0][0]
                assert np.abs(got - chunks[k]).max() < 1e-4
            assert np.array_equal(np.nonzero(arr[a["model_ran"]])[0], arr[a["call_step"]])
            assert arr[a["onnx_fp32_call_max_abs_diff"]].max() < 1e-4
            if mode["temporal_ensemble_coeff"]:
                w, used = arr[a["ensemble_weights"]], arr[a["ensemble_weights_used"]]
                coeff = mode["temporal_ensemble_coeff"]
                np.testing.assert_allclose(w, np.exp(-coeff * np.arange(len(w))), rtol=1e-6)
                counts = arr[a["ensemble_count"]]
                assert counts[0, 0] == 1 and counts[-1, 0] == len(w)  # saturates at chunk_size
                np.testing.assert_allclose(used.sum(1), 1.0, rtol=1e-5)
                returned = arr[a["ensemble_average"]][:, 0] * np.asarray(act_norm["std"], np.float32) \
                    + np.asarray(act_norm["mean"], np.float32)
                assert np.abs(returned - arr[a["action"]]).max() < 1e-5
            else:
                qb = arr[a["queue_len_before"]]
                assert np.array_equal(qb == 0, arr[a["model_ran"]].astype(bool))


def test_golden_io_roundtrip_and_corruption(tmp_path):
    from policy_export.goldenio import GoldenError, GoldenWriter, read_golden

    rng = np.random.default_rng(0)
    data = {"a/u8": (rng.integers(0, 256, (3, 4, 2)), "u8"), "b/i32": (rng.integers(-5, 5, (7,)), "i32"),
            "c/f32": (rng.standard_normal((2, 3)).astype(np.float32), "f32"), "d/u64": (np.array([0, 2**40]), "u64")}
    w = GoldenWriter(tmp_path)
    for name, (a, dt) in data.items():
        w.add(name, a, dt)
    w.finish({"format": "test"})
    doc, arr = read_golden(tmp_path)
    for name, (a, _dt) in data.items():
        assert np.array_equal(arr[name], a) and arr[name].shape == a.shape
    raw = (tmp_path / "c/f32.f32").read_bytes()
    assert raw == data["c/f32"][0].astype("<f4").tobytes()  # raw little-endian, C order, no header
    (tmp_path / "c/f32.f32").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(GoldenError, match="sha256"):
        read_golden(tmp_path)
    with pytest.raises(GoldenError, match="non-integer"):
        w.add("e", np.array([0.5]), "i32")


def _committed_bundles() -> list[Path]:
    return [d for d in (REPO / "models").iterdir() if (d / "bundle.toml").is_file()
            and tomllib.loads((d / "bundle.toml").read_text()).get("kind") == "policy"]


@pytest.mark.parametrize("bundle", _committed_bundles(), ids=lambda p: p.name)
def test_committed_policy_manifests_validate(bundle):
    from policy_export import manifest as schema

    schema.validate(_load_manifest(bundle), bundle)  # keys, types, lengths, sha256 and sizes of the files


def test_manifest_validator_names_the_key():
    from policy_export import manifest as schema

    if not (ACT_TEST / "bundle.toml").is_file():
        pytest.skip("models/act-test not built")
    good = _load_manifest(ACT_TEST)
    cases = [
        (lambda m: m["action"]["limits"]["lower"].pop(), r"action\.limits\.lower"),
        (lambda m: m["policy"].pop("chunk_size"), r"policy\.chunk_size: missing"),
        (lambda m: m["observation"]["images"][0]["normalization"].update(mode="ZSCORE"),
         r"observation\.images\[0\]\.normalization\.mode"),
        (lambda m: m["policy"].update(temporal_ensemble_coeff=0.01), r"policy\.n_action_steps: must be 1"),
        (lambda m: m["observation"]["state"]["normalization"].pop("max"), r"observation\.state\.normalization\.max"),
        (lambda m: m["graph"].update(inputs=["x"]), r"graph\.inputs"),
        (lambda m: m.update(kind="reward"), r"kind"),
    ]
    for mutate, pattern in cases:
        m = copy.deepcopy(good)
        mutate(m)
        with pytest.raises(schema.ManifestError, match=pattern):
            schema.validate(m)


def test_readme_documents_every_manifest_key():
    from policy_export import manifest as schema

    text = (TOOLS / "README.md").read_text()
    table = text[text.index("### bundle.toml (kind = \"policy\")"):]
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.M))
    for key, _t, _req in schema.KEYS:
        assert key in documented, f"models/tools/README.md does not document {key}"
    for key, _t, _req in schema.NORM_KEYS:
        assert f"*.normalization.{key}" in documented, f"README lacks *.normalization.{key}"
