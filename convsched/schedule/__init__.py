"""The schedule DSL: frozen steps, templates with knobs, the recorder, helpers for knob spaces and for deriving
vector widths, register tiles and epilogues from the target (helpers.py)."""
from .helpers import (EPILOGUE, epilogue_stages, fits_registers, fma_efficiency, inline_epilogue, place_epilogue,
                      split_lanes, tile_registers, vectorize_innermost, vectorize_lanes, vectors)
from .knobs import divisors, divisors_of, vector_multiples
from .steps import TAILS, Schedule, Step, STEP_TYPES
from .template import add_template_dir, get_template, list_templates, record, replay, template_dirs

__all__ = ["Schedule", "Step", "STEP_TYPES", "TAILS", "add_template_dir", "get_template", "list_templates", "record",
           "replay", "template_dirs", "divisors", "divisors_of", "vector_multiples", "EPILOGUE", "epilogue_stages",
           "fits_registers", "fma_efficiency", "inline_epilogue", "place_epilogue", "split_lanes", "tile_registers",
           "vectorize_innermost", "vectorize_lanes", "vectors"]
