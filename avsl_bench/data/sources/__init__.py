"""Media sources for the acquisition stage (yt-dlp, mirror directories/tarballs)."""
