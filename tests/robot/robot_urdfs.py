"""URDFs, meshes and controller files written for the robot-import tests.

``six_dof_urdf``: a UR-like 6-DoF arm (straight up at zero; shoulder 16 cm above the base,
upper arm 42.5 cm, forearm 39.2 cm, wrist 10 + 10 cm) built from primitives, with a world link,
a fixed flange (``tool0``) and optional mesh references. The controller file lists the joints
in another order than the URDF.
"""
from __future__ import annotations

import struct
from pathlib import Path

import yaml

SEVEN_ORDER = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "forearm_roll_joint", "wrist_1_joint",
               "wrist_2_joint", "wrist_3_joint"]

URDF_ORDER = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint",
              "wrist_3_joint"]
CONTROLLER_ORDER = ["elbow_joint", "shoulder_lift_joint", "shoulder_pan_joint", "wrist_3_joint", "wrist_2_joint",
                    "wrist_1_joint"]

# name, parent, child, origin xyz, axis, lower, upper, effort, velocity
_JOINTS = [
    ("shoulder_pan_joint", "base_link", "shoulder_link", "0 0 0.1625", "0 0 1", -3.14, 3.14, 150, 3.14),
    ("shoulder_lift_joint", "shoulder_link", "upper_arm_link", "0 0.138 0", "0 1 0", -2.0, 2.0, 150, 3.14),
    ("elbow_joint", "upper_arm_link", "forearm_link", "0 -0.131 0.425", "0 1 0", -2.6, 2.6, 150, 3.14),
    ("wrist_1_joint", "forearm_link", "wrist_1_link", "0 0 0.392", "0 1 0", -3.14, 3.14, 28, 3.14),
    ("wrist_2_joint", "wrist_1_link", "wrist_2_link", "0 0.127 0", "0 0 1", -3.14, 3.14, 28, 3.14),
    ("wrist_3_joint", "wrist_2_link", "wrist_3_link", "0 0 0.1", "0 1 0", -3.14, 3.14, 28, 3.14),
]
# link: mass kg, collision/visual cylinder (radius, length, z offset)
_LINKS = {
    "base_link": (4.0, (0.075, 0.1, 0.05)),
    "shoulder_link": (3.7, (0.06, 0.15, 0.0)),
    "upper_arm_link": (8.4, (0.054, 0.425, 0.2125)),
    "forearm_link": (2.3, (0.045, 0.392, 0.196)),
    "wrist_1_link": (1.2, (0.04, 0.12, 0.0)),
    "wrist_2_link": (1.2, (0.04, 0.12, 0.0)),
    "wrist_3_link": (0.25, (0.035, 0.05, 0.0)),
}


def _link(name: str, spec, *, inertia: bool = True, visual_mesh: str | None = None,
          collision_mesh: str | None = None) -> str:
    mass, (radius, length, z) = spec
    cylinder = f'<cylinder radius="{radius}" length="{length}"/>'
    i = mass * (3 * radius ** 2 + length ** 2) / 12
    inertial = (f'<inertial><origin xyz="0 0 {z}"/><mass value="{mass}"/>'
                f'<inertia ixx="{i:.6f}" ixy="0" ixz="0" iyy="{i:.6f}" iyz="0" izz="{mass * radius ** 2 / 2:.6f}"/>'
                "</inertial>") if inertia else ""
    visual = (f'<mesh filename="{visual_mesh}"/>' if visual_mesh else cylinder)
    collision = (f'<mesh filename="{collision_mesh}"/>' if collision_mesh else cylinder)
    return (f'  <link name="{name}">{inertial}\n'
            f'    <visual><origin xyz="0 0 {z}"/><geometry>{visual}</geometry></visual>\n'
            f'    <collision><origin xyz="0 0 {z}"/><geometry>{collision}</geometry></collision>\n'
            "  </link>\n")


# the 7th joint of seven=True: a forearm roll halfway down the forearm
_ROLL_JOINT = ("forearm_roll_joint", "forearm_link", "forearm_roll_link", "0 0 0.2", "0 0 1", -2.9, 2.9, 60, 3.14)
_ROLL_LINK = ("forearm_roll_link", (1.0, (0.042, 0.192, 0.096)))


def six_dof_urdf(*, name: str = "six", no_inertia: tuple[str, ...] = (), visual_meshes: dict | None = None,
                 collision_meshes: dict | None = None, continuous: tuple[str, ...] = (),
                 extra: str = "", seven: bool = False) -> str:
    """The 6-DoF arm (``seven``: with a forearm roll joint, 7-DoF)."""
    visual_meshes, collision_meshes = visual_meshes or {}, collision_meshes or {}
    links, joints = dict(_LINKS), list(_JOINTS)
    if seven:
        links[_ROLL_LINK[0]] = _ROLL_LINK[1]
        links["forearm_link"] = (2.3, (0.045, 0.2, 0.1))
        wrist_1 = joints[3]
        joints[3:4] = [_ROLL_JOINT, (wrist_1[0], "forearm_roll_link", wrist_1[2], "0 0 0.192", *wrist_1[4:])]
    parts = [f'<?xml version="1.0"?>\n<robot name="{name}">\n  <link name="world"/>\n',
             '  <joint name="world_joint" type="fixed"><parent link="world"/><child link="base_link"/></joint>\n']
    for link in links:
        parts.append(_link(link, links[link], inertia=link not in no_inertia, visual_mesh=visual_meshes.get(link),
                           collision_mesh=collision_meshes.get(link)))
    for jname, parent, child, xyz, axis, lo, hi, effort, vel in joints:
        jtype = "continuous" if jname in continuous else "revolute"
        limit = (f'<limit effort="{effort}" velocity="{vel}"/>' if jtype == "continuous" else
                 f'<limit lower="{lo}" upper="{hi}" effort="{effort}" velocity="{vel}"/>')
        parts.append(f'  <joint name="{jname}" type="{jtype}"><parent link="{parent}"/><child link="{child}"/>'
                     f'<origin xyz="{xyz}" rpy="0 0 0"/><axis xyz="{axis}"/>{limit}'
                     '<dynamics damping="0.5" friction="0.05"/></joint>\n')
    parts.append('  <link name="flange"/>\n  <joint name="flange_joint" type="fixed"><parent link="wrist_3_link"/>'
                 '<child link="flange"/><origin xyz="0 0.1 0"/></joint>\n')
    parts.append('  <link name="tool0"/>\n  <joint name="tool0_joint" type="fixed"><parent link="flange"/>'
                 '<child link="tool0"/><origin xyz="0 0.02 0"/></joint>\n')
    parts.append(extra)
    parts.append("</robot>\n")
    return "".join(parts)


def controllers_yaml(path: Path, joints=CONTROLLER_ORDER, *, gains: dict | None = None) -> Path:
    data = {
        "controller_manager": {"ros__parameters": {
            "update_rate": 500,
            "joint_state_broadcaster": {"type": "joint_state_broadcaster/JointStateBroadcaster"},
            "forward_position_controller": {"type": "position_controllers/JointGroupPositionController"}}},
        "forward_position_controller": {"ros__parameters": {"joints": list(joints), "interface_name": "position"}},
    }
    if gains:
        data["forward_position_controller"]["ros__parameters"]["gains"] = gains
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_stl(path: Path, size_m: float = 0.05) -> Path:
    """A binary STL tetrahedron."""
    v = [(0, 0, 0), (size_m, 0, 0), (0, size_m, 0), (0, 0, size_m)]
    faces = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\0" * 80 + struct.pack("<I", len(faces)))
        for face in faces:
            f.write(struct.pack("<3f", 0, 0, 0))
            for i in face:
                f.write(struct.pack("<3f", *v[i]))
            f.write(b"\0\0")
    return path


def write_obj(path: Path, size_m: float = 0.06) -> Path:
    """An OBJ cube."""
    h = size_m / 2
    verts = [(x, y, z) for x in (-h, h) for y in (-h, h) for z in (-h, h)]
    quads = [(1, 3, 4, 2), (5, 6, 8, 7), (1, 2, 6, 5), (3, 7, 8, 4), (1, 5, 7, 3), (2, 4, 8, 6)]
    lines = [f"v {x} {y} {z}" for x, y, z in verts]
    for a, b, c, d in quads:
        lines += [f"f {a} {b} {c}", f"f {a} {c} {d}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
