"""Clean ESRGAN: the baseline every robust method is compared with.

Nothing is method-specific: the shared trainer's RRDBNet, VGG discriminator and ESRGAN losses on
clean bicubic pairs. Trained from scratch it is the profile's *clean baseline*; the robust methods
fine-tune from it (``train.init: baseline``).
"""

from robustsr_bench.methods.base import Method


class ESRGAN(Method):
    name = "esrgan"
