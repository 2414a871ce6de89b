// Refreshes the live regions ([data-refresh]) every two seconds: always (data-always), or while
// the region says something is still running (a table with data-active="true"). The pages work
// without this script; it only spares a reload.
"use strict";

async function refresh(region) {
  const response = await fetch(region.dataset.refresh, { credentials: "same-origin" });
  if (response.redirected || !response.ok) {
    location.reload(); // signed out, or the gateway restarted: let the page say so
    return;
  }
  region.innerHTML = await response.text();
}

function running(region) {
  return region.dataset.always === "true" || region.querySelector('[data-active="true"]') !== null;
}

for (const region of document.querySelectorAll("[data-refresh]")) {
  const tick = async () => {
    if (running(region)) {
      try {
        await refresh(region);
      } catch (error) {
        console.warn("console refresh failed", error);
      }
    }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}
