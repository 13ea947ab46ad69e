"""meshplan: plan how to serve large language models, Mixture-of-Experts first, on GPU clusters.

Data flows one way (DESIGN.md section 13):
specs -> strategy -> cost -> search -> plan -> report; the CLI sits on top.
"""

__version__ = "0.1.0"
