"""One prompt to several models: the plan (who runs where), the runner, and the types they share."""
