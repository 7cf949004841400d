"""The generated protobuf modules are fresh: recompiling the .proto gives the same descriptor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from arrowroot.protos import arrowroot_pb2

PROTOS = Path(__file__).resolve().parents[1] / "protos"


def test_arrowroot_pb2_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    out = tmp_path / "set.binpb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--descriptor_set_out={out}",
                    "arrowroot.proto"], check=True)
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    committed = descriptor_pb2.FileDescriptorProto()
    arrowroot_pb2.DESCRIPTOR.CopyToProto(committed)
    def clear(messages):  # json_name is filled in by protoc only; not part of the content
        for msg in messages:
            for field in msg.field:
                field.ClearField("json_name")
            clear(msg.nested_type)  # map fields are nested messages

    for fd in (fresh, committed):
        clear(fd.message_type)
    assert fresh == committed, "protos/arrowroot.proto changed: regenerate with the command in README (Development)"


def test_read_request_json_names():
    from google.protobuf import json_format

    msg = json_format.Parse('{"dataset": "a.root:t", "entryStart": "5", "entry_stop": 9, "withEntryNumbers": true}',
                            arrowroot_pb2.ReadRequest())
    assert (msg.dataset, msg.entry_start, msg.entry_stop, msg.with_entry_numbers) == ("a.root:t", 5, 9, True)
