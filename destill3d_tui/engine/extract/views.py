"""Stage 6 (optional): depth views around the model, headless.

``count`` cameras on a circle at 30 degrees elevation (azimuth step 360/count, 30 degrees for
the default 12), looking at the origin of the unit-sphere-normalised model, +z up. Meshes are
ray cast with Open3D's ``RaycastingScene`` (CPU, no display needed); point clouds are splatted
with a z-buffer. Depth is mapped so near is bright: 255 at the sphere's front, 1 at its back,
0 where nothing was hit.
"""

from __future__ import annotations

import numpy as np

ELEVATION_DEG = 30.0
EYE_DISTANCE = 2.5  # unit sphere seen from 2.5 units away
FOV_DEG = 2.0 * np.degrees(np.arcsin(1.0 / EYE_DISTANCE)) + 2.0  # the whole sphere, with a margin


def camera_eyes(count: int) -> np.ndarray:
    """(count, 3) eye positions, azimuth 0, 360/count, ... at ``ELEVATION_DEG``."""
    az = np.radians(np.arange(count) * 360.0 / count)
    el = np.radians(ELEVATION_DEG)
    return EYE_DISTANCE * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.full(count, np.sin(el))], 1)


def _depth_to_uint8(t: np.ndarray) -> np.ndarray:
    near, far = EYE_DISTANCE - 1.0, EYE_DISTANCE + 1.0
    hit = np.isfinite(t)
    value = 1.0 + 254.0 * (far - np.clip(np.where(hit, t, far), near, far)) / (far - near)
    return np.where(hit, np.rint(value), 0).astype(np.uint8)


def render_mesh_views(vertices: np.ndarray, faces: np.ndarray, count: int = 12, resolution: int = 224) -> np.ndarray:
    """Depth views of a unit-sphere mesh.

    Parameters
    ----------
    vertices : (n, 3) unit-sphere coordinates; faces : (m, 3) int

    Returns
    -------
    (count, resolution, resolution) uint8
    """
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)),
    )
    views = np.zeros((count, resolution, resolution), dtype=np.uint8)
    for i, eye in enumerate(camera_eyes(count)):
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            fov_deg=float(FOV_DEG), center=[0.0, 0.0, 0.0], eye=eye.tolist(), up=[0.0, 0.0, 1.0],
            width_px=resolution, height_px=resolution,
        )  # fmt: skip
        t_hit = scene.cast_rays(rays, nthreads=1)["t_hit"].numpy()
        # rays are not unit length: t is in units of the ray direction's length
        length = np.linalg.norm(rays.numpy()[:, :, 3:], axis=2)
        views[i] = _depth_to_uint8(t_hit * length)
    return views


def render_point_views(points: np.ndarray, count: int = 12, resolution: int = 224) -> np.ndarray:
    """Depth views of unit-sphere points (n, 3), perspective like the mesh views, 2x2 splats.

    Returns
    -------
    (count, resolution, resolution) uint8
    """
    views = np.zeros((count, resolution, resolution), dtype=np.uint8)
    focal = (resolution / 2.0) / np.tan(np.radians(FOV_DEG) / 2.0)
    for i, eye in enumerate(camera_eyes(count)):
        forward = -eye / np.linalg.norm(eye)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        rel = points - eye
        depth = rel @ forward
        col = np.floor(resolution / 2.0 + focal * (rel @ right) / depth).astype(np.int64)
        row = np.floor(resolution / 2.0 - focal * (rel @ up) / depth).astype(np.int64)
        value = _depth_to_uint8(np.linalg.norm(rel, axis=1))
        for dr in (0, 1):
            for dc in (0, 1):
                r, c = row + dr, col + dc
                ok = (r >= 0) & (r < resolution) & (c >= 0) & (c < resolution)
                np.maximum.at(views[i], (r[ok], c[ok]), value[ok])
    return views
