"""Run stac-api-validator with local copies of the JSON schemas (the validator downloads them otherwise).

Usage: STAC_SCHEMA_MAP=.../schema-map.json python stac_api_validator_offline.py [validator options]
Follows the recipe of ../shared/schemas/README.md (copied to tests/fixtures/schemas/README-shared.md): patch
stac-validator and pystac, then run the CLI.
"""

import functools
import json
import os
import sys

MAP = os.path.abspath(os.environ["STAC_SCHEMA_MAP"])

import stac_validator.validate as sv  # noqa: E402

_init = sv.StacValidate.__init__


@functools.wraps(_init)
def _init_with_map(self, *a, **kw):  # type: ignore[no-untyped-def]
    kw["schema_config"] = kw.get("schema_config") or MAP
    _init(self, *a, **kw)


sv.StacValidate.__init__ = _init_with_map  # type: ignore[method-assign]

import pystac.validation  # noqa: E402
from pystac.validation.stac_validator import JsonSchemaSTACValidator  # noqa: E402

validator = JsonSchemaSTACValidator()
with open(MAP) as f:
    for url, rel in json.load(f).items():
        with open(os.path.join(os.path.dirname(MAP), rel)) as g:
            validator.schema_cache[url] = json.load(g)
pystac.validation.set_validator(validator)

from stac_api_validator.__main__ import main  # noqa: E402

sys.exit(main())
