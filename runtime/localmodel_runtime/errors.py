"""The root of the runtime's exceptions. One tree; each class lives beside the code that raises it:

LocalModelException
├── ModelConfigError       a model config that cannot be used (config/loading.py; a ValueError)
├── YAMLDecodeError        text that is not YAML, or values of the wrong type (config/yaml12.py)
├── TemplateError          a template that cannot be loaded (templates/engine.py; a ValueError)
├── GoSyntaxError          a Go template that does not parse (templates/golex.py)
├── RenderError            a template failed while rendering: the untemplated text is used
├── GoExecError            a Go template's execution error (templates/govalues.py)
├── BackendError           a backend's failure (backends/base.py), mapped to an OpenAI error body
│   ├── BackendUnavailable     its library is not installed (names the extra)
│   ├── ModelLoadError         the model cannot be loaded (the operator reads it: Degraded)
│   ├── InvalidRequest         a request this model cannot serve (400)
│   └── UnsupportedOperation   an endpoint this backend does not serve
├── FetchError             a model file that cannot be fetched (config/model_sources.py)
│   └── TooLarge               past the download limit (fetch/transfer.py)
├── GalleryError           a gallery or entry that cannot be used (gallery.py)
├── APIError               a request answered with an OpenAI error body (server/errors.py)
├── ClientGone             the client left before its answer started: nothing is sent (client_gone.py)
└── Failure                a reason for `localmodel-runtime` to exit, one line (cli.py)
"""

from __future__ import annotations


class LocalModelException(Exception):
    """The root of the runtime's (and the shared core's) exceptions."""
