"""The Ray backend's socket frames (no Ray needed): length-prefixed pickles, a close between
frames is the end, a close inside one is an error."""
from __future__ import annotations

import socket

import numpy as np
import pytest

from policies.ray_backend import recv_frame, send_frame


def test_frames_carry_objects_in_order_and_a_close_between_frames_ends_the_stream():
    a, b = socket.socketpair()
    with a, b:
        send_frame(a, ("step", None))
        send_frame(a, ("ok", {"rows": np.arange(3000.0)}))  # larger than one recv
        a.close()
        assert recv_frame(b) == ("step", None)
        status, value = recv_frame(b)
        assert status == "ok" and np.array_equal(value["rows"], np.arange(3000.0))
        assert recv_frame(b) is None


def test_a_close_inside_a_frame_is_an_error():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"\x10\x00\x00\x00abc")  # a 16-byte frame cut after 3 bytes
        a.close()
        with pytest.raises(ConnectionError, match="inside a frame"):
            recv_frame(b)
