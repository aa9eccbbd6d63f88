// The sign-in page's one behaviour: say so when the last token was wrong (/console?wrong).
if (new URLSearchParams(location.search).has("wrong")) {
  document.getElementById("wrong").hidden = false;
}
