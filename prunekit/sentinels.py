"""The core's two sentinel names: the clean run and the dense reference.

Every grid holds the clean run of each ticket (check :data:`CLEAN_CHECK`: nothing perturbed),
against which each check's effect is measured, and the dense reference (method
:data:`DENSE_METHOD`: nothing pruned), run once per model and seed. The core means these two
whatever plugins are installed; the built-in plugins register the check and the method under
these names, importing them from the facade (``prunekit.CLEAN_CHECK``, ``prunekit.DENSE_METHOD``).
"""

from __future__ import annotations

CLEAN_CHECK = "none"  # the check of the clean run (no perturbation)
DENSE_METHOD = "dense"  # the method of the dense reference (no pruning); also its ticket family
