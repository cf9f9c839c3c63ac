/*
 * repost.js — submits the re-post form at once.
 *
 * Apple returns to the callback with a cross-site POST, which does not carry our
 * SameSite=Lax cookies. The callback answers this page, whose form posts the same
 * fields back from our own origin, so this time the browser sends the cookies.
 * Without JavaScript the user presses "Continue".
 */
(function () {
  'use strict';
  var form = document.getElementById('repost');
  if (form) {
    form.submit();
  }
})();
