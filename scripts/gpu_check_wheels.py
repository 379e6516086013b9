"""Print `name==version` of every distribution the GPU check imports beyond torch: transformers, accelerate,
huggingface_hub, safetensors, tokenizers, soxr and what they require on CPython 3.12 / Linux x86-64, at the versions
installed here (read from this environment's metadata, so the GPU machine runs what the tests ran)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.markers import Marker

ROOTS = ["transformers", "accelerate", "huggingface-hub", "safetensors", "tokenizers", "soxr"]
MACHINE = {  # the GPU machines: CPython 3.12 on x86-64 Linux
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def requirements(name: str) -> list[str]:
    names = []
    for requirement in requires(name) or []:
        spec, _, marker = requirement.partition(";")
        if marker and not Marker(marker).evaluate(MACHINE):
            continue
        names.append(re.split(r"[ <>=!~\[(]", spec.strip())[0].lower().replace("_", "-"))
    return names


def closure() -> dict[str, str]:
    found: dict[str, str] = {}
    stack = list(ROOTS)
    while stack:
        name = stack.pop()
        if name in found or name == "torch":  # torch (and what it brings) is the machine's own
            continue
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
        stack += requirements(name)
    return found


if __name__ == "__main__":
    for name, installed in sorted(closure().items()):
        print(f"{name}=={installed}")
