"""The filter-spec field allowlists: API field name → trusted SQL over the list queries.

Job lists select from `jobs j JOIN templates t`, node lists from `nodes n`, template lists
from `templates t`, hardware lists from `hardware h`.
"""

from __future__ import annotations

from agent.devserver.filters import Field

NODE_FIELDS: dict[str, Field] = {
    "pk": Field("n.pk", "int"),
    "id": Field("n.pk", "int"),
    "ip": Field("n.ip", "text"),
    "index": Field("n.idx", "int"),
    "cpu_mem": Field("n.cpu_mem", "int"),
    "gpu_mem": Field("n.gpu_mem", "int"),
    "driver_version": Field("n.driver_version", "text"),
    "hardware_generation": Field("n.hardware_generation", "int"),
    "current_job": Field("n.current_job", "int"),
    "last_seen": Field("n.last_seen", "time"),
}

# `is_cancelled` is not here: on the real server it is a property, not a column, so
# filtering on it is an unknown field (HTML 500).
JOB_FIELDS: dict[str, Field] = {
    "pk": Field("j.pk", "int"),
    "id": Field("j.pk", "int"),
    "template": Field("j.template", "int"),
    "template.pk": Field("j.template", "int"),
    "template.name": Field("t.name", "text"),
    "template.version": Field("t.version", "int"),
    # Every template this server imports is workable: the relation always exists.
    "template.workabletemplate": Field("t.pk", "int"),
    "template.workabletemplate.executor_class": Field("t.executor_class", "text"),
    "parent": Field("j.parent", "int"),
    "description": Field("j.description", "text"),
    "input_values": Field("j.input_values", "text"),
    "parameter_values": Field("j.parameter_values", "text"),
    "node": Field("j.node", "int"),
    "node.pk": Field("j.node", "int"),
    "start_time": Field("j.start_time", "time"),
    "end_time": Field("j.end_time", "time"),
    "error_reason": Field("j.error_reason", "text"),
    "progress_amount": Field("j.progress", "float"),
    "creator": Field("j.creator", "int"),
    "creation_time": Field("j.creation_time", "time"),
    "deletion_time": Field("j.deletion_time", "time"),
}

TEMPLATE_FIELDS: dict[str, Field] = {
    "pk": Field("t.pk", "int"),
    "name": Field("t.name", "text"),
    "version": Field("t.version", "int"),
    "type": Field("t.job_type", "text"),
    "executor_class": Field("t.executor_class", "text"),
    "creation_time": Field("t.creation_time", "time"),
    "deletion_time": Field("t.deletion_time", "time"),
}

HARDWARE_FIELDS: dict[str, Field] = {
    "pk": Field("h.pk", "int"),
    "generation": Field("h.generation", "text"),
    "min_compute_capability": Field("h.min_compute_capability", "float"),
    "max_compute_capability": Field("h.max_compute_capability", "float"),
}
