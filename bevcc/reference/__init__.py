"""Small built-in reference models, used by the README's main job and by tests."""
