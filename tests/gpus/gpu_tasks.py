"""A Python function task of the GPU test: records the GPUs it was given."""


def show(ctx):
    with open(f"{ctx.output_dir}/{ctx.index}.gpus", "w") as out:
        out.write(",".join(ctx.gpus) + "\n")
    return {"gpus": list(ctx.gpus)}
