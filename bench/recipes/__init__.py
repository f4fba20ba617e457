"""Benchmark recipes, one module each; run one as ``PYTHONPATH=bench python -m recipes.<module> SPEC.json``."""

# recipe name -> module that runs it; the tunesmith module reads the method from the recipe name.
RECIPES = {
    "seed": "recipes.seed",
    "careful": "recipes.careful",
    "tunesmith-lora": "recipes.tunesmith_recipe",
    "tunesmith-full": "recipes.tunesmith_recipe",
}
