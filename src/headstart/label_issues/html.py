"""The "Possible label issues" HTML section, shared by doctor.html and report.html: each
flagged image beside its nearest neighbours in feature space, with their labels."""

from __future__ import annotations

import jinja2
from markupsafe import Markup

from headstart.label_issues.table import LabelIssues, relative
from headstart.thumbnails import thumbnail_uri

SHOWN = 24  # findings with thumbnails (each with its neighbours: ~6 images); every one is in label_issues.csv

SECTION = jinja2.Template(
    """\
<div class="label-issues">
<p>{{ n }} of {{ images }} images may be mislabelled{% if expected is not none %}, <b>expected precision {{ "%.2f"|format(expected) }}</b>
(the share of these labels expected to be wrong, fitted on this data: about {{ "%.0f"|format(errors) }} label errors in it){% endif %}:
{{ folds }} heads, each trained on the other folds of the frozen-base features, give their given label
{% if expected is not none %}a calibrated probability under {{ "%.3f"|format(below) }}{% else %}under 5 %{% endif %} (out-of-fold); the suggested
label is the one that clears its class's threshold (confident learning). Ranked by score = 1 &minus; p(given);
beside each image, its nearest neighbours in feature space with their labels and cosine similarity. Every finding, with
its neighbours, is in <code>label_issues.csv</code>: mark <code>exclude</code> false for the labels that
are right, then <code>headstart train DATA --exclude label_issues.csv</code>. DATA itself is never changed.</p>
{% for r in rows %}
<div style="display:flex;gap:8px;flex-wrap:wrap;align-items:flex-start;margin:8px 0;padding:6px;background:#f7f7f7;border-radius:6px">
 <div style="width:170px;font-size:12px;overflow-wrap:anywhere"><img src="{{ r.thumb }}" alt="" style="display:block;max-width:96px;max-height:96px">
 <b>{{ r.rank }}.</b> given <b>{{ r.given }}</b> ({{ "%.2f"|format(r.p_given) }}) &rarr; <b style="color:#b42318">{{ r.suggested }}</b> ({{ "%.2f"|format(r.p_suggested) }}){% if r.issue != "mislabelled" %} [{{ r.issue }}]{% endif %}<br><code>{{ r.path }}</code></div>
 {% for nb in r.neighbours %}<div style="width:110px;font-size:11px;color:#555;overflow-wrap:anywhere"><img src="{{ nb.thumb }}" alt="" style="display:block;max-width:72px;max-height:72px">{{ nb.labels }} · {{ "%.2f"|format(nb.similarity) }}</div>{% endfor %}
</div>
{% endfor %}
{% if n > rows|length %}<p>&hellip; {{ n - rows|length }} more in label_issues.csv.</p>{% endif %}
</div>
""",
    autoescape=True,
)


def render_section(found: LabelIssues, shown: int = SHOWN) -> Markup:
    """The section's HTML (thumbnails inline as data: URIs)."""
    rows = []
    for rank, issue in enumerate(found.issues[:shown], 1):
        rows.append(
            {
                "rank": rank,
                "path": relative(issue.path, found.root),
                "thumb": thumbnail_uri(issue.path, 96),
                "given": issue.given,
                "suggested": issue.suggested,
                "issue": issue.issue,
                "p_given": issue.p_given,
                "p_suggested": issue.p_suggested,
                "neighbours": [{"thumb": thumbnail_uri(n.path), "labels": n.labels, "similarity": n.similarity} for n in issue.neighbours],
            }
        )
    cutoff = found.summary.get("cutoff") or {}
    return Markup(
        SECTION.render(
            rows=rows,
            n=len(found.issues),
            images=found.images,
            folds=found.summary.get("folds", "k"),
            expected=found.summary.get("expected_precision"),
            errors=cutoff.get("expected_errors", 0),
            below=cutoff.get("p_given_below", 0.05),
        )
    )
