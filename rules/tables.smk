# Paper tables and figures from run outputs, the comparison with the published numbers, the
# claims report and the failed-runs summary (each command writes its md, html and csv itself:
# ftft.render). Table and figure ids come from the config (ftft.tables.table_ids,
# ftft.figures.figure_ids); each job's inputs are exactly the files it
# reads (ftft.workflow.Plan.artefact_inputs). These are local jobs reading the run
# tree under the results folder; paths are given as functions, as `snakemake --lint` asks.

import json


rule config_json:
    output:
        L.config_json(),
    log:
        L.log("config_json", "config_json"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        config=json.dumps(PLAN.config_dump()),
    shell:
        "ftft config-json --json {params.config:q} --out {output:q} > {log:q} 2>&1"


rule table:
    input:
        config=L.config_json(),
        runs=lambda w: PLAN.artefact_inputs("table", w.table),
    output:
        csv=L.table(ext="csv"),
        md=L.table(ext="md"),
        tex=L.table(ext="tex"),
        html=report(
            L.table(ext="html"),
            caption="../src/ftft/report/table.rst",
            category="Tables",
            labels={"table": "Table {table}"},
        ),
    log:
        L.log("table", "table{table}"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        caption=lambda w: PLAN.caption("table", w.table),
        results=lambda w: L.results,
        prefix=lambda w: L.table_prefix(w.table),
    shell:
        "ftft table --id {wildcards.table:q} --config-json {input.config:q} "
        "--results {params.results:q} --out-prefix {params.prefix:q} > {log:q} 2>&1"


rule figure:
    input:
        config=L.config_json(),
        runs=lambda w: PLAN.artefact_inputs("figure", w.figure),
    output:
        png=report(
            L.figure(ext="png"),
            caption="../src/ftft/report/figure.rst",
            category="Figures",
            labels={"figure": "Figure {figure}", "format": "image (PNG)"},
        ),
        pdf=report(
            L.figure(ext="pdf"),
            caption="../src/ftft/report/figure.rst",
            category="Figures",
            labels={"figure": "Figure {figure}", "format": "print (PDF)"},
        ),
    log:
        L.log("figure", "figure{figure}"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        caption=lambda w: PLAN.caption("figure", w.figure),
        results=lambda w: L.results,
        prefix=lambda w: L.figure_prefix(w.figure),
    shell:
        "ftft figure --id {wildcards.figure:q} --config-json {input.config:q} "
        "--results {params.results:q} --out-prefix {params.prefix:q} > {log:q} 2>&1"


rule compare:
    input:
        config=L.config_json(),
        tables=[L.table(t, "csv") for t in PLAN.table_ids if t != "A1"],
    output:
        csv=L.comparison("csv"),
        md=L.comparison("md"),
        html=report(
            L.comparison("html"),
            caption="../src/ftft/report/paper_comparison.rst",
            category="Comparison with the paper",
            labels={"report": "Reproduced vs published"},
        ),
    log:
        L.log("compare", "compare"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        results=lambda w: L.results,
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
    shell:
        "ftft compare --config-json {input.config:q} --results {params.results:q} "
        "--out-prefix {params.prefix:q} > {log:q} 2>&1"


rule claims:
    input:
        config=L.config_json(),
        files=PLAN.claims_inputs(),
    output:
        csv=L.claims("csv"),
        md=L.claims("md"),
        html=report(
            L.claims("html"),
            caption="../src/ftft/report/claims.rst",
            category="Claims",
            labels={"report": "Claims of the paper"},
        ),
    log:
        L.log("claims", "claims"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        results=lambda w: L.results,
        prefix=lambda w, output: output.csv.removesuffix(".csv"),
    shell:
        "ftft claims --config-json {input.config:q} --results {params.results:q} "
        "--out-prefix {params.prefix:q} > {log:q} 2>&1"


rule failed_runs:
    input:
        config=L.config_json(),
        records=[L.run_file("run.json", r) for r in PLAN.runs],
    output:
        md=L.failed_runs("md"),
        csv=L.failed_runs("csv"),
        html=report(
            L.failed_runs("html"),
            caption="../src/ftft/report/failed_runs.rst",
            category="Failed runs",
            labels={"report": "Failed runs"},
        ),
    log:
        L.log("failed_runs", "failed_runs"),
    localrule: True
    conda:
        "../envs/ftft.yaml"
    params:
        results=lambda w: L.results,
        prefix=lambda w, output: output.md.removesuffix(".md"),
    shell:
        "ftft failed-runs --config-json {input.config:q} --results {params.results:q} "
        "--out-prefix {params.prefix:q} > {log:q} 2>&1"
