"""BatchNotebook operator: runs Jupyter servers as jobs on external HPC batch schedulers."""

GROUP = "batchnotebook.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NOTEBOOKS = "batchnotebooks"
CLUSTERS = "batchclusters"
REPORT_TOKEN_KEY = "BATCHNOTEBOOK_REPORT_TOKEN"
