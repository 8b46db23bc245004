"""A job's definition → one typed :class:`RunSpec`. Pure code: no I/O, no clock.

Where the values come from (:func:`resolve_job_spec`): the template's parameter
defaults, overridden by the job's ``parameter_values`` (not for ``const`` parameters,
which keep the template's default). A JSON-typed value that arrives as text (a template
default stored as a string) is decoded; ``analysis`` and ``outputs`` are always decoded
when they are text. ``{"value", "type"}`` wrappers are unwrapped; a bare value is taken
as is. For ``agent run-once --spec`` see :func:`load_spec_document`.

The analysis, in three dialects (detected in this order):

* Sahara — the analysis has ``type``, ``mains`` or ``job_configs``. ``type`` must be
  ``"Shell"``; ``mains`` holds exactly one item, a path already in the job directory or a
  file object ``{name?, downloadUrl|content}`` (staged, executable; ``name`` defaults to
  the URL's last segment); ``libs`` are the same and staged alongside. The command is the
  argv ``("./<main>", *job_configs.args)`` (args may be strings, numbers or booleans),
  ``job_configs.params`` is the environment, ``job_configs.configs`` must be an object
  if given and is not used (it configures Hadoop jobs, not shell ones).
* Exabyte — the analysis has ``compute {nodes, ppn, queue, timeLimit}`` (not together
  with ``hardware``). cores = nodes * ppn, all on this host. MPI is used when the
  analysis says ``useMpi`` explicitly, else when cores > 1. ``queue`` must be one of the
  agent's ``queues`` when that list is non-empty; absent, any agent takes it.
  ``timeLimit`` is the walltime.
* Rescale — everything else: ``command``, ``envVars``, ``useMpi`` (default false),
  ``hardware {coresPerSlot=1, slots=1 (must be 1), coreType, walltime, memory}``, all
  optional except ``command``. ``memory`` (MiB, integer ≥ 1) is an extension of ours;
  ``coreType`` may be a code or ``{"code": ...}``. ``hardware`` is honoured in the Sahara
  dialect too (default one core, no MPI).

In every dialect: ``command`` is a non-empty string (``/bin/sh -c``) or a non-empty list
of strings (argv). ``envVars`` values may be strings, numbers or booleans (as text,
``true``/``false``). ``inputFiles [{downloadUrl, relativePath?, md5?, sha256?,
decompress?}]``: ``relativePath`` defaults to the URL's last segment. ``templateTasks
[{templateFile {downloadUrl|content, name?}, processedFilename}]``: ``processedFilename``
defaults to the template file's name. ``preProcessScript`` / ``postProcessScript`` are file
objects ``{downloadUrl|content, name?}`` (name default: the URL's last segment, else
``preprocess.sh`` / ``postprocess.sh``) and ``…ScriptCommand`` a command: a file alone
runs as ``./<name>``, both stage the file and run the command. ``progressRegex`` must
compile and have one group or a group named ``progress``; the captured number is read
as a fraction when ≤ 1, as a percent when > 1 or directly followed by ``%``
(see :mod:`agent.progress`). An ``{"analyses": [one]}`` wrapper is accepted.
Paths are relative to the job directory, never absolute, never with a ``..`` component.
``outputs`` names and types are URL-safe and at most 200 characters (the job server's
``JobOutput.name`` is a ``CharField(max_length=200)``).

Keys: every object is strict. A key the agent neither reads nor lists as documented but
ignored (the one table, ``IGNORED`` in :mod:`agent.spec._keys`: Rescale's ``analysis``,
``useRescaleLicense``…, Exabyte's ``notify``, ``cluster``…, Sahara's ``interface``…) is an
error naming the closest known key: ``analysis.hardware.walltme unknown key (did you
mean 'walltime'?)``.

Variables: every parameter value other than ``analysis`` and ``outputs``, and every input
value, is a ``${name}`` variable (parameters win a clash): strings as they are, numbers
with ``str()``, booleans as ``true``/``false``, lists and objects as JSON; null values
are no variables. :func:`substitute` applies them to the command (each argv item), the
environment values, Sahara args and the pre/post-process commands here, and to template
files at staging (``RunSpec.variables``); not to URLs or paths.

Anything invalid raises :class:`SpecError` naming the dotted field, never another
exception; the job then ends ERRORED with ``str(error)``. Every error of a spec is
reported at once: the one :class:`SpecError` raised holds them all in ``errors`` (its own
``field`` and ``message`` are the first one's) and its text joins them with ``"; "``, cut
to 2000 characters (``… and N more``). A part whose container is wrong (``hardware`` is
a list) is not looked into further.
"""

from agent.spec._checks import check_url_safe, parse_walltime, substitute
from agent.spec._model import (
    FileSource,
    InputFile,
    OutputSpec,
    RunSpec,
    Script,
    SpecError,
    TemplateTask,
)
from agent.spec._resolve import load_spec_document, resolve_job_spec

__all__ = [
    "FileSource",
    "InputFile",
    "OutputSpec",
    "RunSpec",
    "Script",
    "SpecError",
    "TemplateTask",
    "check_url_safe",
    "load_spec_document",
    "parse_walltime",
    "resolve_job_spec",
    "substitute",
]
