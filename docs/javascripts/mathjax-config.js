// MathJax 3 settings for pymdownx.arithmatex in generic mode: typeset only the \( \) and \[ \]
// spans that arithmatex marked with the "arithmatex" class, nothing else on the page (code
// blocks keep their backslashes). Loaded before MathJax itself, which docs/hooks.py copies
// into the site from the django-static-mathjax package.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
