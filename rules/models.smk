# Demo mode: tiny random-init stand-ins for the paper's models, built offline.
# (Paper mode trains the hub models named in the config; no rule needed.)


rule build_demo_model:
    input:
        corpus=PLAN.demo_corpus(),
    output:
        directory("<resources>/demo_models/{model}"),
    log:
        "<logs>/build_demo_model/{model}.log",
    conda:
        "../envs/ftft.yaml"
    params:
        family=lambda w: PLAN.model_setting(w.model, "family"),
        size=lambda w: PLAN.model_setting(w.model, "size"),
    shell:
        "ftft build-demo-model --model {wildcards.model} --family {params.family} "
        "--size {params.size} --corpus {input.corpus} --out {output} > {log} 2>&1"
