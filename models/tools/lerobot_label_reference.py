#!/usr/bin/env python
"""LeRobot's own labelling of a LeRobot dataset: the reference for `sarm label --dataset`.

Runs LeRobot 0.4.4's `compute_rabc_weights.compute_sarm_progress` unchanged: its LeRobotDataset
with delta_timestamps (its default torchcodec decoder, its frame picking and tolerance), its
frame-by-frame loop with batch 1 (`dataset[i]` decodes the whole 9-frame window and the
processor encodes all 13 frames, 4 of them the zeroed rewind slots, for every scored frame),
its stride rule, np.interp interpolation and parquet writer. Three things are substituted,
because LeRobot cannot do them here:

- the image and text encoder. LeRobot's SARM processor hard-codes CLIP
  (openai/clip-vit-base-patch32, downloaded from the Hub) in SARMEncodingProcessorStep; this
  uses the bundle's encoder instead, in PyTorch with the exporter's reference preprocessing
  (EfficientNet-lite0, or a CLIP folder), applied to the same uint8 images LeRobot's step
  builds, and the bundle's precomputed text embedding of the task. The rest of the step
  (batching, rewind masking, state padding) is LeRobot's code.
- the state statistics: the bundle's mean/std (what the model was trained with) instead of
  the dataset's meta/stats.json, in LeRobot's NormalizerProcessorStep.
- a dataset recorded faster than the bundle's clock: when it runs r times faster (an integer),
  `frame_gap * r` and `--stride * r`, so windows cover the same seconds and the model is
  queried at its own rate (what `sarm label` does by timestamp).

The checkpoint is the LeRobot model the bundle was exported from.

    models/tools/.venv/bin/python models/tools/lerobot_label_reference.py \\
        --dataset ros/tests/fixtures/lerobot/aloha_av1 --checkpoint models/tools/work/sarm-test-checkpoint \\
        --bundle models/sarm-test --out /tmp/ref.parquet [--bundle-fps 10] [--stride 1]

Prints a JSON line with the wall time, frames/s and peak memory (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def build_step_class():
    from lerobot.policies.sarm import processor_sarm

    class BundleEncodingStep(processor_sarm.SARMEncodingProcessorStep):
        """LeRobot's SARMEncodingProcessorStep with the bundle's encoders instead of CLIP."""

        def __init__(self, *args, encoder=None, text_embeddings=None, **kw):
            # LeRobot's __init__ unchanged, except that it must not fetch CLIP from the Hub.
            class _Skip:
                @staticmethod
                def from_pretrained(*a, **k):
                    class _M:
                        def to(self, *a, **k):
                            return self

                        def eval(self):
                            return self

                    return _M()

            saved = processor_sarm.CLIPModel, processor_sarm.CLIPProcessor
            processor_sarm.CLIPModel = processor_sarm.CLIPProcessor = _Skip
            try:
                super().__init__(*args, **kw)
            finally:
                processor_sarm.CLIPModel, processor_sarm.CLIPProcessor = saved
            self.clip_model = self.clip_processor = None
            self.encoder = encoder
            self.text_embeddings = text_embeddings

        @torch.no_grad()
        def _encode_images_batch(self, images: np.ndarray) -> torch.Tensor:
            # LeRobot's conversion to uint8 HWC images, verbatim; then the bundle's encoder.
            batch_size, seq_length = images.shape[0], images.shape[1]
            images = images.reshape(batch_size * seq_length, *images.shape[2:])
            num_frames = images.shape[0]
            images_list = []
            for i in range(num_frames):
                img = images[i]
                if img.shape[0] in [1, 3]:  # Channel first (C, H, W)
                    img = img.transpose(1, 2, 0)
                if img.shape[-1] == 1:
                    img = np.repeat(img, 3, axis=-1)
                if img.dtype != np.uint8:
                    img = (img * 255).astype(np.uint8) if img.max() <= 1.0 else img.astype(np.uint8)
                images_list.append(img)
            all_embeddings = []
            for i in range(0, num_frames, self.config.clip_batch_size):
                batch = torch.stack([self.encoder.preprocess.to_tensor(im)
                                     for im in images_list[i: i + self.config.clip_batch_size]])
                all_embeddings.append(self.encoder.module(batch).detach().cpu())
            all_embeddings = torch.cat(all_embeddings)
            return all_embeddings.reshape(batch_size, seq_length, -1)

        @torch.no_grad()
        def _encode_text_clip(self, text: str, batch_size: int) -> torch.Tensor:
            if text not in self.text_embeddings:
                raise KeyError(f"the bundle has no embedding for task {text!r}")
            return torch.tensor(self.text_embeddings[text], dtype=torch.float32)[None].expand(batch_size, -1)

    return BundleEncodingStep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True, help="LeRobot dataset folder (v3.0)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="the LeRobot SARM the bundle was exported from")
    ap.add_argument("--random-weights", action="store_true",
                    help="no checkpoint: a SARMRewardModel of the bundle's architecture (bundle.toml's "
                         "provenance.training.config, model dims and heads) with random weights. Same work per "
                         "frame, so for timing only; the progress values mean nothing")
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bundle-fps", type=float, default=None, help="override the bundle's window.fps")
    ap.add_argument("--stride", type=int, default=1, help="in ticks of the bundle's clock, as sarm label")
    ap.add_argument("--camera-key", default=None)
    ap.add_argument("--state-key", default="observation.state")
    ap.add_argument("--clip-model", default=None, help="CLIP folder, for bundles with a CLIP encoder")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--first-episodes", type=int, default=None, metavar="K",
                    help="only episodes 0..K-1 (compute_sarm_progress loops over range(dataset.num_episodes), "
                         "so only a prefix of the episodes can be selected)")
    args = ap.parse_args(argv)
    if (args.checkpoint is None) == (not args.random_weights):
        ap.error("give --checkpoint, or --random-weights for timing")
    if args.threads:
        torch.set_num_threads(args.threads)

    import lerobot.policies.sarm.compute_rabc_weights as crw
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.sarm.modeling_sarm import SARMRewardModel
    from lerobot.processor import (
        AddBatchDimensionProcessorStep,
        DeviceProcessorStep,
        NormalizerProcessorStep,
        PolicyProcessorPipeline,
        RenameObservationsProcessorStep,
    )
    from sarm_export.encoders import load_encoder

    manifest = tomllib.loads((args.bundle / "bundle.toml").read_text())
    enc_kind = {"efficientnet-lite0": "efficientnet-lite0", "clip-vision": "clip"}[manifest["image_encoder"]["kind"]]
    encoder = load_encoder(enc_kind, args.clip_model)
    texts = {t["text"]: t["embedding"] for t in manifest["text"]["tasks"]}
    st = manifest["state"]
    camera_key = args.camera_key or f"observation.images.{manifest['image_encoder']['cameras'][0]}"
    info = json.loads((args.dataset / "meta" / "info.json").read_text())
    ratio = info["fps"] / (args.bundle_fps or manifest["window"]["fps"])
    r = round(ratio)
    if abs(ratio - r) > 1e-9 or r < 1:
        raise SystemExit(f"dataset fps {info['fps']} is not an integer multiple of the bundle's clock: "
                         "LeRobot's frame-index windows cannot express it")
    names = info["features"][args.state_key].get("names")
    if names is not None and list(names) != list(st["joint_names"]):
        raise SystemExit(f"{args.state_key} names {names} are not the bundle's joint order")
    stats = {args.state_key: {"mean": torch.tensor(st["mean"]), "std": torch.tensor(st["std"])}}
    step_cls = build_step_class()
    repo_id = "local/" + args.dataset.name

    def load_model():
        if args.checkpoint is not None:
            return SARMRewardModel.from_pretrained(str(args.checkpoint))
        from lerobot.policies.sarm.configuration_sarm import SARMConfig

        tc = manifest["provenance"]["training"]["config"]
        md, heads = manifest["model"], manifest["heads"]
        kw = dict(hidden_dim=md["hidden_dim"], num_heads=md["num_heads"], num_layers=md["num_layers"],
                  image_dim=md["image_dim"], text_dim=md["text_dim"], max_state_dim=md["state_dim"],
                  n_obs_steps=tc["n_obs_steps"], frame_gap=tc["frame_gap"], device="cpu",
                  annotation_mode="dual" if "dense" in heads else "single_stage")
        for h in heads:
            kw.update({f"num_{h}_stages": len(heads[h]["stage_names"]), f"{h}_subtask_names": heads[h]["stage_names"],
                       f"{h}_temporal_proportions": heads[h]["temporal_proportions"]})
        torch.manual_seed(0)
        return SARMRewardModel(SARMConfig(**kw))

    def load_sarm_resources(dataset_repo_id, reward_model_path, device="cpu"):
        model = load_model()
        model.config.device = "cpu"
        model.config.frame_gap = model.config.frame_gap * r
        model.config.image_key = camera_key
        model.config.state_key = args.state_key
        model.to("cpu").eval()
        delta = model.config.observation_delta_indices
        fps = info["fps"]
        episodes = list(range(args.first_episodes)) if args.first_episodes else None
        dataset = LeRobotDataset(repo_id, root=args.dataset, episodes=episodes, delta_timestamps={
            camera_key: [i / fps for i in delta], args.state_key: [i / fps for i in delta]})
        cfg = model.config
        preprocess = PolicyProcessorPipeline(steps=[
            AddBatchDimensionProcessorStep(),
            RenameObservationsProcessorStep(rename_map={}),
            NormalizerProcessorStep(features={**cfg.input_features, **cfg.output_features},
                                    norm_map=cfg.normalization_mapping, stats=stats),
            step_cls(config=cfg, dataset_meta=dataset.meta, dataset_stats=stats, encoder=encoder,
                     text_embeddings=texts),
            DeviceProcessorStep(device="cpu"),
        ])
        return dataset, model, preprocess

    crw.load_sarm_resources = load_sarm_resources
    start = time.perf_counter()
    out = crw.compute_sarm_progress(dataset_repo_id=repo_id, reward_model_path=str(args.bundle),
                                    output_path=str(args.out), head_mode="both", device="cpu",
                                    num_visualizations=0, stride=args.stride * r)
    wall = time.perf_counter() - start
    import pyarrow.parquet as pq

    rows = pq.read_metadata(out).num_rows
    print(json.dumps({"out": str(out), "rows": rows, "wall_s": round(wall, 3),
                      "frames_per_s": round(rows / wall, 2), "frame_gap_x": r, "stride_lerobot": args.stride * r,
                      "torch_threads": torch.get_num_threads(),
                      "weights": "random (timing only)" if args.random_weights else str(args.checkpoint),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
