"""Forward kinematics and the site Jacobian of a serial arm, in numpy (no MuJoCo).

An end-effector action (:mod:`sim_bridge.actions`) turns a Cartesian step into joint targets
on the robot computer, where there is no simulator: the chain travels in the policy's manifest
as plain numbers (:meth:`KinematicChain.to_dict`), read once from the compiled MuJoCo model
(:meth:`KinematicChain.from_model`) at export and in the env.

The chain is the path of bodies from the world to the body carrying the site. Each body is
placed in its parent by its (position, quaternion), then turned by its joints as MuJoCo's
``mj_kinematics`` does: a hinge rotates the body about its axis through the joint's anchor
(body frame), by ``q - qpos0``; a slide moves it along the axis. Joints on the path must be
the profile's (hinge or slide); profile joints off the path (fingers) get zero columns.
Tested against ``mj_kinematics`` / ``mj_jacSite`` (``tests/sim_bridge/test_kinematics.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HINGE, SLIDE = "hinge", "slide"
_MJ_JOINT_TYPES = {3: HINGE, 2: SLIDE}  # mjtJoint values (mjJNT_HINGE, mjJNT_SLIDE)


def quat_to_mat(q) -> np.ndarray:
    """Rotation matrix of a quaternion (w, x, y, z), normalized first."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about the unit ``axis`` by ``angle`` (Rodrigues)."""
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return np.array([[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
                     [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
                     [t * x * z - s * y, t * y * z + s * x, t * z * z + c]])


@dataclass(frozen=True)
class ChainLink:
    """One body on the path: its placement in the parent and (at most one) joint."""

    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]
    joint: str | None = None  # a profile joint name, None = welded to the parent
    joint_type: str = HINGE
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)  # unit, in the body frame
    anchor: tuple[float, float, float] = (0.0, 0.0, 0.0)  # joint position in the body frame
    qpos0: float = 0.0


class KinematicChain:
    """Site position, orientation and Jacobian of a serial chain from joint positions."""

    def __init__(self, joint_names, links, site_pos, site_quat, site: str = ""):
        self.joint_names = tuple(joint_names)
        self.links = tuple(links)
        self.site = str(site)
        self.site_pos = np.asarray(site_pos, dtype=float)
        self.site_mat = quat_to_mat(site_quat)
        self._site_quat = tuple(float(v) for v in site_quat)
        index = {name: i for i, name in enumerate(self.joint_names)}
        self._columns = []
        for link in self.links:
            if link.joint is None:
                continue
            if link.joint not in index:
                raise ValueError(f"kinematic chain: joint {link.joint!r} is not one of the arm's joints "
                                 f"{list(self.joint_names)}")
            if link.joint_type not in (HINGE, SLIDE):
                raise ValueError(f"kinematic chain: joint {link.joint!r} has type {link.joint_type!r}; "
                                 f"only {HINGE!r} and {SLIDE!r} joints are supported")
            self._columns.append(index[link.joint])
        # per link, precomputed: parent placement, unit axis, anchor, joint column (-1: none)
        self._prepared = []
        it = iter(self._columns)
        for link in self.links:
            axis = np.asarray(link.axis, dtype=float)
            norm = float(np.linalg.norm(axis))
            if link.joint is not None and not norm > 0:
                raise ValueError(f"kinematic chain: joint {link.joint!r} has a zero axis")
            self._prepared.append((np.asarray(link.pos, dtype=float), quat_to_mat(link.quat),
                                   axis / norm if norm > 0 else axis, np.asarray(link.anchor, dtype=float),
                                   next(it) if link.joint is not None else -1, link.joint_type == HINGE,
                                   float(link.qpos0)))

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, joint_names, site: str) -> "KinematicChain":
        """The chain from the world to ``site`` of a compiled MuJoCo model (attribute access
        only: this module does not import mujoco)."""
        try:
            site_id = model.site(site).id
        except KeyError:
            raise ValueError(f"kinematic chain: the model has no site {site!r}") from None
        path = []
        body = int(model.site_bodyid[site_id])
        while body != 0:
            path.append(body)
            body = int(model.body_parentid[body])
        links = []
        for b in reversed(path):
            start, count = int(model.body_jntadr[b]), int(model.body_jntnum[b])
            if count > 1:
                raise ValueError(f"kinematic chain: body {model.body(b).name!r} has {count} joints; "
                                 "one joint per body is supported")
            joint = {}
            if count == 1:
                kind = _MJ_JOINT_TYPES.get(int(model.jnt_type[start]))
                name = model.joint(start).name
                if kind is None:
                    raise ValueError(f"kinematic chain: joint {name!r} on the path to {site!r} is neither "
                                     "a hinge nor a slide")
                joint = {"joint": name, "joint_type": kind, "axis": tuple(model.jnt_axis[start].tolist()),
                         "anchor": tuple(model.jnt_pos[start].tolist()),
                         "qpos0": float(model.qpos0[model.jnt_qposadr[start]])}
            links.append(ChainLink(pos=tuple(model.body_pos[b].tolist()), quat=tuple(model.body_quat[b].tolist()),
                                   **joint))
        return cls(joint_names, links, model.site_pos[site_id], model.site_quat[site_id], site=site)

    def to_dict(self) -> dict:
        """Plain numbers (the manifest's ``action.kinematics``)."""
        return {"site": self.site, "joint_names": list(self.joint_names),
                "links": [{"pos": list(l.pos), "quat": list(l.quat), "joint": l.joint, "joint_type": l.joint_type,
                           "axis": list(l.axis), "anchor": list(l.anchor), "qpos0": l.qpos0} for l in self.links],
                "site_pos": self.site_pos.tolist(), "site_quat": list(self._site_quat)}

    @classmethod
    def from_dict(cls, data: dict) -> "KinematicChain":
        """The inverse of :meth:`to_dict` (ValueError/KeyError/TypeError on a malformed one)."""
        links = [ChainLink(pos=_vec(d["pos"], 3, "pos"), quat=_vec(d["quat"], 4, "quat"), joint=d.get("joint"),
                           joint_type=str(d.get("joint_type", HINGE)), axis=_vec(d.get("axis", (0, 0, 1)), 3, "axis"),
                           anchor=_vec(d.get("anchor", (0, 0, 0)), 3, "anchor"), qpos0=float(d.get("qpos0", 0.0)))
                 for d in data["links"]]
        return cls(data["joint_names"], links, _vec(data["site_pos"], 3, "site_pos"),
                   _vec(data["site_quat"], 4, "site_quat"), site=str(data.get("site", "")))

    # --- evaluation -----------------------------------------------------------------------
    def jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(site position [3], site rotation [3, 3], Jp [3, n], Jr [3, n])`` at joint positions ``q``
        (the arm's joint order), in the chain's root (world) frame."""
        return self._walk(q, with_jacobian=True)

    def stacked_jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(site position [3], site rotation [3, 3], [Jp; Jr] [6, n])``: :meth:`jacobian` with its
        two blocks stacked, what the end-effector action solves with. The arrays may be views
        that the chain's next call overwrites (``simulator.ModelChain``): use them before then."""
        site, rot, jp, jr = self.jacobian(q)
        return site, rot, np.vstack((jp, jr))

    def site_position(self, q) -> np.ndarray:
        """The site's position at ``q`` (forward kinematics only: no Jacobian columns)."""
        return self._walk(q, with_jacobian=False)[0]

    def _walk(self, q, *, with_jacobian: bool):
        q = np.asarray(q, dtype=float).tolist()
        pos, mat = np.zeros(3), np.eye(3)
        n = len(self.joint_names)
        if with_jacobian:
            axes, anchors = np.zeros((n, 3)), np.zeros((n, 3))
            hinge = np.zeros(n, dtype=bool)
        for offset, rot, axis, anchor, col, is_hinge, qpos0 in self._prepared:
            pos = pos + mat @ offset
            mat = mat @ rot
            if col < 0:
                continue
            world_axis = mat @ axis
            if is_hinge:
                world_anchor = pos + mat @ anchor
                turn = _axis_angle(world_axis.tolist(), q[col] - qpos0)
                mat = turn @ mat
                pos = world_anchor + turn @ (pos - world_anchor)
            else:
                pos = pos + world_axis * (q[col] - qpos0)
            if with_jacobian:
                axes[col] = world_axis
                if is_hinge:
                    anchors[col], hinge[col] = world_anchor, True
        site = pos + mat @ self.site_pos
        if not with_jacobian:
            return site, None, None, None
        # hinge: (axis x (site - anchor), axis); slide: (axis, 0); joints off the path: zero columns
        d = site - anchors
        cross = axes[:, _NEXT] * d[:, _PREV] - axes[:, _PREV] * d[:, _NEXT]  # row-wise axis x d
        jp = np.where(hinge[:, None], cross, axes).T
        jr = axes.T * hinge
        return site, mat @ self.site_mat, jp, jr


_NEXT, _PREV = [1, 2, 0], [2, 0, 1]


# --- batched ----------------------------------------------------------------------------------
def _axis_angle_batch(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotation matrices [B, 3, 3] about unit ``axes`` [B, 3] by ``angles`` [B] (Rodrigues)."""
    x, y, z = axes[:, 0], axes[:, 1], axes[:, 2]
    c, s = np.cos(angles), np.sin(angles)
    t = 1.0 - c
    out = np.empty((len(angles), 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = t * x * x + c, t * x * y - s * z, t * x * z + s * y
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = t * x * y + s * z, t * y * y + c, t * y * z - s * x
    out[:, 2, 0], out[:, 2, 1], out[:, 2, 2] = t * x * z - s * y, t * y * z + s * x, t * z * z + c
    return out


def jacobian_batch(chain: KinematicChain, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`KinematicChain.jacobian` for a batch of joint vectors ``q`` [B, n]: site positions
    [B, 3], rotations [B, 3, 3], Jp and Jr [B, 3, n]. The same walk with a batch axis (batched
    closed-loop rollouts of an end-effector policy run it every control period for every row)."""
    q = np.atleast_2d(np.asarray(q, dtype=float))
    site, mat, axes, anchors, hinge = _walk_batch(chain, q)
    d = site[:, None, :] - anchors
    jp = np.where(hinge[None, :, None], np.cross(axes, d), axes).transpose(0, 2, 1)
    jr = (axes * hinge[None, :, None]).transpose(0, 2, 1)
    return site, mat @ chain.site_mat, jp, jr


def site_positions(chain: KinematicChain, q: np.ndarray) -> np.ndarray:
    """:meth:`KinematicChain.site_position` for a batch ``q`` [B, n]: [B, 3]."""
    return _walk_batch(chain, np.atleast_2d(np.asarray(q, dtype=float)))[0]


def _walk_batch(chain: KinematicChain, q: np.ndarray):
    """``KinematicChain._walk`` with a batch axis. Kept apart from it on purpose: the per-row
    walk runs in the policy node's control cycle on Python floats, where [1, 3, 3] array
    broadcasting would cost more than the walk itself; the tests hold the two equal."""
    batch, n = len(q), len(chain.joint_names)
    pos, mat = np.zeros((batch, 3)), np.broadcast_to(np.eye(3), (batch, 3, 3))
    axes, anchors = np.zeros((batch, n, 3)), np.zeros((batch, n, 3))
    hinge = np.zeros(n, dtype=bool)
    for offset, rot, axis, anchor, col, is_hinge, qpos0 in chain._prepared:
        pos = pos + mat @ offset
        mat = mat @ rot
        if col < 0:
            continue
        world_axis = mat @ axis
        if is_hinge:
            world_anchor = pos + mat @ anchor
            turn = _axis_angle_batch(world_axis, q[:, col] - qpos0)
            mat = turn @ mat
            pos = world_anchor + (turn @ (pos - world_anchor)[:, :, None])[:, :, 0]
            anchors[:, col], hinge[col] = world_anchor, True
        else:
            pos = pos + world_axis * (q[:, col] - qpos0)[:, None]
        axes[:, col] = world_axis
    site = pos + mat @ chain.site_pos
    return site, mat, axes, anchors, hinge


def _vec(value, size: int, name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in value)
    if len(out) != size or not all(math.isfinite(v) for v in out):
        raise ValueError(f"kinematic chain: {name} must be {size} finite numbers, got {value!r}")
    return out
