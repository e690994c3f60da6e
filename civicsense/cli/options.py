"""Options shared by several CLI verbs, declared once."""

from __future__ import annotations

import typer

DataOption = typer.Option(None, "--data", help="Data source: path, https:// URL or gs:// URI "
                          "[env CIVICSENSE_DATA; default the ../shared/data mirror].")
HomeOption = typer.Option(None, "--home", help="State directory [env CIVICSENSE_HOME; "
                          "default ./.civicsense].")
DryRunOption = typer.Option(False, "--dry-run", help="Print the exact patch (and alias moves) "
                            "that would be sent; change nothing.")
NamespaceOption = typer.Option(None, "--namespace", "-n", help="Kubernetes namespace "
                               "[env CIVICSENSE_K8S_NAMESPACE; default civicsense].")
ContextOption = typer.Option(None, "--context", help="kubectl context [default: current].")
