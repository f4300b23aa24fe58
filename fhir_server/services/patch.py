"""The two FHIR R4 patch formats, as pure functions: each returns a patched copy and never mutates its input.

``apply_json_patch(resource, operations)``
    JSON Patch (RFC 6902, ``application/json-patch+json``) with RFC 6901 pointers.  Error expressions are JSON
    Pointers into the patch document (``/2/path``).  ``test`` compares numbers numerically (``1`` equals
    ``1.0``) and ignores object key order.  Details in ``_json_patch``.

``apply_fhirpath_patch(resource, parameters, is_repeating=r4_is_repeating)``
    FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html): a ``Parameters`` resource of ``operation``
    parameters (add | insert | delete | replace | move).  Paths use member navigation, ``[n]``, ``where()``,
    ``first()``, ``last()``, ``ofType()`` and ``extension()``; ``where`` criteria are evaluated by fhirpathpy.
    Error expressions point into the Parameters resource (``Parameters.parameter[2]``,
    ``Parameters.parameter[2].part[1]``).  ``is_repeating(path)`` tells whether an element repeats (``path`` as
    in the R4 StructureDefinition: ``Patient.contact.telecom``, ``HumanName.given``, ``Observation.value[x]``;
    it answers None when it does not know).  The default, :func:`r4_is_repeating`, answers from the base R4
    definitions; with ``is_repeating=None`` the JSON alone decides: an element that is absent is added as a
    single value, one that already holds an array is appended to.  Details in ``_fhirpath_patch`` (operations),
    ``_fhirpath_values`` (values and nested parts), ``_fhirpath_nav`` (paths to locations),
    ``_fhirpath_criteria`` (``where``).

Both raise ``InvalidRequest`` (400) for a malformed patch document and ``ValidationFailed`` (422) for a well-formed
patch that cannot be applied (a path that selects nothing, an index out of range, a failed ``test``).  A patch may
not change the resource's ``resourceType`` or ``id``, nor make it something other than a JSON object
(``InvalidRequest``, naming the operation).  Values are copied exactly as parsed by ``jsonio``, so decimals keep
their digits (``72.50`` stays ``72.50``).  The caller validates the patched resource against the R4 rules.
"""

from __future__ import annotations

from fhir_server.services._fhirpath_model import r4_is_repeating
from fhir_server.services._fhirpath_patch import apply_fhirpath_patch
from fhir_server.services._fhirpath_values import IsRepeating
from fhir_server.services._json_patch import apply_json_patch

__all__ = ["IsRepeating", "apply_fhirpath_patch", "apply_json_patch", "r4_is_repeating"]
