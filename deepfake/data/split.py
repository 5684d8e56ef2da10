"""Grouping videos that share faces (a fake and its original, FaceForensics++ pairs) and splitting
train/val/test so that no group straddles two splits, stratified by label."""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from deepfake.config import SplitParams

# FaceForensics++ names a fake `<target>_<source>.mp4` beside originals `<target>.mp4` and `<source>.mp4`,
# and the fake carries faces of both. A shared prefix (`ffpp-c40--deepfakes_`) must match for names to link.
_FFPP_PAIR = re.compile(r"^(.*?)(\d{3,})_(\d{3,})$")
_FFPP_ID = re.compile(r"^(.*?)(\d{3,})$")


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def assign_groups(videos: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Group each video with the videos it shares faces with.

    Files with the same given group (the metadata's group or identity column) share it. A fake joins its
    `original`. FaceForensics++-style names link too: `<prefix><a>_<b>` joins
    `<prefix><a>`, `<prefix><b>` and `<prefix><b>_<a>` (the swap the other way round, which carries the
    same two faces). An `original` missing from the dataset still groups the fakes made from it.
    Returns the group of each row (named after a REAL member where there is one) and a note per row.
    """
    relpaths = list(videos["relpath"])
    by_name = {**{Path(p).name: p for p in relpaths}, **{p: p for p in relpaths}}
    ffpp_names: dict[tuple, list[str]] = defaultdict(list)
    for relpath in relpaths:
        stem = Path(relpath).stem
        if match := _FFPP_PAIR.match(stem):
            prefix, first, second = match.groups()
            ffpp_names[(prefix, frozenset((first, second)))].append(relpath)
        elif match := _FFPP_ID.match(stem):
            ffpp_names[match.groups()].append(relpath)

    links = _UnionFind()
    notes = pd.Series("", index=videos.index, dtype=object)
    # A group the metadata gives (an identity's photos) links its members whatever their names.
    given = videos["given_group"] if "given_group" in videos else pd.Series("", index=videos.index)
    for relpath, group in zip(relpaths, given):
        if isinstance(group, str) and group:
            links.union(relpath, f"given:{group}")
    for index, relpath, original in zip(videos.index, relpaths, videos["original"]):
        links.find(relpath)
        if isinstance(original, str) and original:
            target = by_name.get(original) or by_name.get(Path(original).name)
            if target is None:
                notes[index] = f"original {original!r} is not among the accepted videos; grouped by that name"
                target = f"original:{Path(original).name}"
            links.union(relpath, target)
        if match := _FFPP_PAIR.match(Path(relpath).stem):
            prefix, first, second = match.groups()
            for key in ((prefix, first), (prefix, second), (prefix, frozenset((first, second)))):
                for partner in ffpp_names.get(key, []):
                    links.union(relpath, partner)

    members = defaultdict(list)
    for relpath, label in zip(relpaths, videos["label"]):
        members[links.find(relpath)].append((label != "REAL", relpath))
    names = {root: min(items)[1] for root, items in members.items()}
    groups = videos["relpath"].map(lambda p: names[links.find(p)])
    return groups, notes


def split_by_group(labels: np.ndarray, groups: np.ndarray, *, val: float, test: float, seed: int) -> np.ndarray:
    """Assign train/val/test so that each group lies in one split, stratified by label.

    Among the folds scikit-learn's StratifiedGroupKFold proposes, the held-out part is the one that leaves
    both labels on each side where possible, then the one closest to the asked size.
    """
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(f"split ratios must satisfy 0 <= val, test and val + test < 1 (val={val}, test={test})")
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    split = np.full(len(labels), "train", dtype=object)
    remaining = np.arange(len(labels))
    for name, ratio in (("test", test), ("val", val / (1 - test))):
        if ratio <= 0 or len(remaining) == 0:
            continue
        held_out = _held_out_fold(labels[remaining], groups[remaining], ratio, seed)
        split[remaining[held_out]] = name
        remaining = remaining[~held_out]
    return split


def _held_out_fold(labels: np.ndarray, groups: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    mask = np.zeros(len(labels), dtype=bool)
    if len(np.unique(groups)) < 2:
        return mask
    classes, class_sizes = np.unique(labels, return_counts=True)
    target = ratio * len(labels)
    target_splits = max(2, round(1 / ratio))
    # Candidates: folds at the asked size and up to twice it (bigger folds hold several groups, so they can
    # hold both labels when groups are few), over a few shuffles; and holding nothing out, for sets so small
    # that any hold-out would leave training without one of the labels.
    candidates = [np.array([], dtype=int)]
    for n_splits in range(target_splits, max(2, target_splits // 2) - 1, -1):
        n_splits = min(n_splits, len(np.unique(groups)), class_sizes.max())
        if n_splits < 2:
            continue
        for repeat in range(3):
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + repeat)
            with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": expected
                warnings.simplefilter("ignore", UserWarning)
                candidates += [held for _, held in folds.split(np.zeros(len(labels)), labels, groups)]

    def badness(held: np.ndarray) -> tuple:
        rest = np.delete(labels, held)
        return (
            len(np.unique(rest)) < len(classes),
            len(np.unique(labels[held])) < len(classes),
            abs(len(held) - target),
        )

    mask[min(candidates, key=badness)] = True
    return mask


def apply_split(videos: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill the split column; with `use_given`, groups whose given splits disagree are taken out."""
    videos = videos.copy()
    videos["split"] = videos["given_split"]
    conflicts = pd.DataFrame(columns=["relpath", "reason", "source"])
    if params.use_given:
        per_group = videos.dropna(subset=["given_split"]).groupby("group")["given_split"].agg(lambda s: sorted(set(s)))
        spanning = per_group[per_group.map(len) > 1]
        bad = videos["group"].isin(spanning.index)
        if bad.any():
            conflicts = videos.loc[bad, ["relpath", "source"]].assign(
                reason=videos.loc[bad, "group"].map(
                    lambda g: (
                        f"group {g!r} is given splits {', '.join(spanning[g])}: a fake and its original "
                        "must share one split; fix the split column"
                    )
                )
            )
            videos = videos.loc[~bad].copy()
        # A group with a given split anywhere takes it everywhere.
        given = per_group.drop(spanning.index).map(lambda s: s[0])
        videos["split"] = videos["group"].map(given).astype(object)
    todo = videos["split"].isna()
    if todo.any():
        videos.loc[todo, "split"] = split_by_group(
            videos.loc[todo, "label_id"].to_numpy(),
            videos.loc[todo, "group"].to_numpy(),
            val=params.val,
            test=params.test,
            seed=params.seed,
        )
    return videos, conflicts
