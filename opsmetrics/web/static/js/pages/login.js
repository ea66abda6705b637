// The sign-in form: keep the token for the API (localStorage) and for page loads (cookie).
import { storeToken } from "../api.js";
import "../common.js";

document.getElementById("login-form")?.addEventListener("submit", (event) => {
  event.preventDefault();
  storeToken(document.getElementById("token").value.trim());
  window.location.reload();
});
