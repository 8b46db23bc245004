"""The job server client: typed models, classified errors, one method per call."""

from agent.server.client import RetryPolicies, RetryPolicy, ServerClient, format_progress
from agent.server.errors import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    JobTaken,
    NotFound,
    NotStarted,
    RateLimited,
    ServerError,
    ServerFault,
    ServerUnreachable,
)
from agent.server.models import Job, Node, OutputInfo, OutputRef, Template, TemplateParameter

__all__ = [
    "AuthError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Job",
    "JobTaken",
    "Node",
    "NotFound",
    "NotStarted",
    "OutputInfo",
    "OutputRef",
    "RateLimited",
    "RetryPolicies",
    "RetryPolicy",
    "ServerClient",
    "ServerError",
    "ServerFault",
    "ServerUnreachable",
    "Template",
    "TemplateParameter",
    "format_progress",
]
