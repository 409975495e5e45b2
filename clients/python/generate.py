"""Regenerates the gRPC code of control_tower_client from ../../proto (run after any proto change).

    python generate.py            # rewrite src/control_tower_client/_generated
    python generate.py --check    # exit 1 if the committed code is stale (CI)

Needs grpcio-tools (pip install grpcio-tools).
"""

import filecmp
import pathlib
import re
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
TARGET = HERE / "src" / "control_tower_client" / "_generated"
PACKAGE = "control_tower_client._generated"


def generate(out: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = pathlib.Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    # protoc writes absolute imports ("from controltower.v1 import tasks_pb2"); make them package-relative.
    for path in out.rglob("*.py*"):
        text = path.read_text()
        text = re.sub(r"^from controltower\.v1 import", f"from {PACKAGE}.controltower.v1 import", text, flags=re.M)
        text = re.sub(r"^import controltower\.v1\.", f"import {PACKAGE}.controltower.v1.", text, flags=re.M)
        path.write_text(text)
    for package in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (package / "__init__.py").touch()


def same_tree(a: pathlib.Path, b: pathlib.Path) -> bool:
    left = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    right = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return left == right and all(filecmp.cmp(a / p, b / p, shallow=False) for p in left)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp) / "_generated"
        fresh.mkdir()
        generate(fresh)
        if "--check" in sys.argv:
            if not TARGET.exists() or not same_tree(fresh, TARGET):
                sys.exit("the generated code is stale: run `python clients/python/generate.py` and commit it")
            print("generated code is up to date")
            return
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(fresh, TARGET)
        print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
