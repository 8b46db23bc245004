"""Which keys each object of a job spec may hold: the ones the agent reads, and the ones
the three dialects document that it accepts but ignores. Any other key is a spec error
naming the nearest known key, so a typo (``walltme``) never runs silently."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from agent.spec._model import SpecError

# Rescale's file object (``GET /api/v2/files/``), as it appears in ``inputFiles``,
# ``templateTasks[].templateFile`` and the pre/post-process scripts of a job analysis.
_RESCALE_FILE = (
    "id",
    "name",
    "typeId",
    "dateUploaded",
    "relativePath",
    "encodedEncryptionKey",
    "sharedWith",
    "decryptedSize",
    "owner",
    "path",
    "isUploaded",
    "viewInBrowser",
    "md5",
)
# Sahara's job binary, as it appears in ``mains`` and ``libs``.
_SAHARA_BINARY = ("id", "description", "extra", "is_public", "is_protected")

_ANALYSIS_COMMON = (
    "hardware",
    "useMpi",
    "inputFiles",
    "templateTasks",
    "preProcessScript",
    "preProcessScriptCommand",
    "postProcessScript",
    "postProcessScriptCommand",
    "progressRegex",
)

KNOWN: Mapping[str, tuple[str, ...]] = {
    "rescale": ("command", "envVars", *_ANALYSIS_COMMON),
    "exabyte": ("command", "envVars", "compute", *_ANALYSIS_COMMON),
    "sahara": ("type", "mains", "libs", "job_configs", *_ANALYSIS_COMMON),
    "analyses": ("analyses",),
    "hardware": ("coresPerSlot", "gpusPerSlot", "slots", "walltime", "memory", "coreType"),
    "coreType": ("code",),
    "compute": ("nodes", "ppn", "queue", "timeLimit"),
    "job_configs": ("args", "params", "configs"),
    "inputFile": ("downloadUrl", "relativePath", "md5", "sha256", "decompress", "decryptedSize"),
    "templateTask": ("templateFile", "processedFilename"),
    "file": ("downloadUrl", "content", "name"),
    "output": ("name", "type", "path"),
    "document": ("analysis", "outputs", "parameters"),
}
"""Keys the agent reads, per kind of object."""

_RESCALE_IGNORED = (
    "analysis",
    "useRescaleLicense",
    "onDemandLicenseSeller",
    "userDefinedLicenseSettings",
    "flags",
)

IGNORED: Mapping[str, tuple[str, ...]] = {
    # Rescale job analysis (``jobanalyses[]`` of ``POST /api/v2/jobs/``): the software
    # and its licence are the node's business here. The Exabyte form is the same plus
    # ``compute``.
    "rescale": _RESCALE_IGNORED,
    "exabyte": _RESCALE_IGNORED,
    # Sahara job template and job execution (``POST /jobs``, ``POST /jobs/{id}/execute``):
    # where it runs and who may see it belong to Sahara.
    "sahara": (
        "name",
        "description",
        "interface",
        "is_public",
        "is_protected",
        "job_id",
        "cluster_id",
        "input_id",
        "output_id",
    ),
    "analyses": (),
    # Rescale hardware: ``type`` (compute or a cluster kind) and the server's summary.
    "hardware": ("type", "coreSummary"),
    "coreType": ("name",),
    # Exabyte ``compute`` (ESSE ``job/compute.json``): scheduler and notification details.
    "compute": (
        "timeLimitType",
        "notify",
        "email",
        "maxCPU",
        "arguments",
        "cluster",
        "errors",
        "excludeFilesPattern",
    ),
    "job_configs": (),
    "inputFile": tuple(
        key for key in _RESCALE_FILE if key not in ("relativePath", "md5", "decryptedSize")
    ),
    "templateTask": (),
    "file": tuple(key for key in dict.fromkeys((*_RESCALE_FILE, *_SAHARA_BINARY)) if key != "name"),
    "output": (),
    "document": ("description",),
}
"""Keys the dialects document that the agent accepts and does not use, per kind of
object: the one table README's "Accepted but ignored" section lists."""


def unknown_keys(data: Mapping[Any, Any], field: str, kind: str) -> list[SpecError]:
    """An error for each key of ``data`` that is neither read nor ignored for ``kind``,
    naming the closest known key when one is close (``did you mean 'walltime'?``)."""
    allowed = KNOWN[kind] + IGNORED[kind]
    errors = []
    for key in data:
        if key in allowed:
            continue
        errors.append(SpecError(f"{field}.{key}", "unknown key" + _suggestion(key, allowed)))
    return errors


def _suggestion(key: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(key, str):
        return ""
    folded = {name.lower(): name for name in allowed}
    close = difflib.get_close_matches(key.lower(), list(folded), n=1)
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""
