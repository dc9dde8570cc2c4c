"""ModelNet40-normal-resampled layout, as the PointNet++ PyTorch loaders read it.

::

    <output>/modelnet40_shape_names.txt      one class per line (label index order)
    <output>/modelnet40_train.txt            shape ids: <class>_0001 ...
    <output>/modelnet40_test.txt
    <output>/modelnet40_val.txt              (extra; the loaders read train/test only)
    <output>/<class>/<class>_0001.txt        P lines "x,y,z,nx,ny,nz"

Loaders recover the class from the shape id by dropping the last ``_NNNN`` part, so class names
may contain underscores; other characters unsafe in file names become ``_``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import Exporter, ExportLayout, ExportRecord, safe_name

LINE = "%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n"


def unique_folders(labels: list[str]) -> dict[str, str]:
    """label -> folder name, safe for file systems and distinct even when two labels clean alike."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        base = folder = safe_name(label)
        n = 2
        while folder.lower() in used:  # case-insensitive file systems fold "Chair" and "chair"
            folder, n = f"{base}_{n}", n + 1
        used.add(folder.lower())
        out[label] = folder
    return out


class ModelNetExporter(Exporter):
    name = "modelnet"
    description = "ModelNet40-normal-resampled folders (PointNet++ loaders)"

    def begin(self, layout: ExportLayout) -> None:
        super().begin(layout)
        self._folder = unique_folders(layout.label_names)
        self._counter: dict[str, int] = dict.fromkeys(self._folder.values(), 0)
        self._ids: dict[str, list[str]] = {split: [] for split in layout.split_counts}

    def write(self, record: ExportRecord) -> str:
        assert self.layout is not None
        folder = self._folder[record.label]
        self._counter[folder] += 1
        shape_id = f"{folder}_{self._counter[folder]:04d}"
        target = self.layout.output / folder
        target.mkdir(exist_ok=True)
        rows = np.hstack([record.points, record.normals]).astype(np.float32).astype(np.float64)
        # one %-format over the whole array: ten times faster than np.savetxt's per-row loop;
        # 9 significant digits round-trip float32 exactly
        (target / f"{shape_id}.txt").write_text(LINE * len(rows) % tuple(rows.ravel().tolist()))
        self._ids[record.split].append(shape_id)
        return f"{folder}/{shape_id}.txt"

    def finish(self) -> list[Path]:
        assert self.layout is not None
        out = self.layout.output
        names = out / "modelnet40_shape_names.txt"
        names.write_text("".join(self._folder[n] + "\n" for n in self.layout.label_names))
        paths = [names]
        for split in ("train", "test", "val"):
            if split in self._ids or split != "val":
                path = out / f"modelnet40_{split}.txt"
                path.write_text("".join(i + "\n" for i in self._ids.get(split, [])))
                paths.append(path)
        return paths

    def loading_note(self) -> str:
        return (
            "Point `ModelNetDataLoader(root=<this folder>, args, split='train')` of Pointnet_Pointnet2_pytorch\n"
            "(with `use_normals=True`) at this folder; each file has `x,y,z,nx,ny,nz` lines."
        )
