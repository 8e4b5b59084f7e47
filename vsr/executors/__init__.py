"""Where the upscaling runs: local threads (local), or Ray actors (ray_pool: the actors; ray_frames:
the frame dispatcher; ray_actor: what each actor process runs)."""
