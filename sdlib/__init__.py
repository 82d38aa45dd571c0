"""sdlib: the library behind the course "Stable Diffusion from scratch".

One module per idea; import what you need explicitly, e.g.
    from sdlib.schedules import NoiseSchedule
    from sdlib.runtime import setup
"""
__version__ = "0.1.0"
