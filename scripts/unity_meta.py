"""Write the Unity ``.meta`` files of the UPM package in clients/unity (deterministic GUIDs).

A package installed from a git URL is immutable: Unity ignores any asset without its ``.meta`` file
("has no meta file, but it's in an immutable folder"). Each GUID is derived from the asset's path in the
package, so re-running this changes nothing and GUIDs stay stable across releases. Folders ending in ``~``
(``Samples~``, ``Tests~``) are not imported by Unity and get none.

    .venv/bin/python scripts/unity_meta.py           # write missing/outdated .meta files
    .venv/bin/python scripts/unity_meta.py --check   # exit 1 if any is missing or different
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clients" / "unity"

_IMPORTERS = {
    ".cs": "MonoImporter:\n  externalObjects: {}\n  serializedVersion: 2\n  defaultReferences: []\n  executionOrder: 0\n"
           "  icon: {instanceID: 0}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n",
    ".asmdef": "AssemblyDefinitionImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n"
               "  assetBundleVariant: \n",
}
_TEXT = "TextScriptImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n"
_FOLDER = "folderAsset: yes\nDefaultImporter:\n  externalObjects: {}\n  userData: \n  assetBundleName: \n  assetBundleVariant: \n"


def guid(relative: str) -> str:
    return hashlib.md5(f"com.npcruntime.client/{relative}".encode()).hexdigest()  # noqa: S324 - an id, not security


def expected() -> dict[Path, str]:
    """Every asset of the package → the text of its .meta file."""
    metas: dict[Path, str] = {}
    for path in sorted(PACKAGE.rglob("*")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.suffix == ".meta" or any(part.endswith("~") or part.startswith(".") for part in path.relative_to(PACKAGE).parts):
            continue
        body = _FOLDER if path.is_dir() else _IMPORTERS.get(path.suffix, _TEXT)
        metas[path.with_name(path.name + ".meta")] = f"fileFormatVersion: 2\nguid: {guid(relative)}\n{body}"
    return metas


def main(argv: list[str]) -> int:
    check = "--check" in argv
    bad = []
    for meta, text in expected().items():
        if not meta.is_file() or meta.read_text(encoding="utf-8") != text:
            bad.append(meta)
            if not check:
                meta.write_text(text, encoding="utf-8")
    stray = [m for m in PACKAGE.rglob("*.meta") if m not in expected()]
    if check and (bad or stray):
        for meta in bad:
            print(f"missing or outdated: {meta.relative_to(PACKAGE)}", file=sys.stderr)
        for meta in stray:
            print(f"no asset for: {meta.relative_to(PACKAGE)}", file=sys.stderr)
        print("run: .venv/bin/python scripts/unity_meta.py", file=sys.stderr)
        return 1
    if not check:
        print(f"{len(bad)} .meta file(s) written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
