#!/usr/bin/env bash
# The ACE-Step guide's curl + jq workflow, literally: submit, poll with task_id_list, take the files out
# of the result string, download each with curl "$API_URL$FILE". Needs API_URL; writes into OUT_DIR.
set -euo pipefail
: "${API_URL:?set API_URL}"
OUT_DIR="${OUT_DIR:-.}"

TASK_ID=$(curl -s -X POST "$API_URL/release_task" \
  -H "Content-Type: application/json" \
  -d '{"caption": "upbeat pop song with guitar", "lyrics": "[Verse]\nHello world", "duration": 10, "batch_size": 2}' \
  | jq -r '.data.task_id')
echo "task: $TASK_ID" >&2

for _ in $(seq 1 300); do
  RESULT=$(curl -s -X POST "$API_URL/query_result" \
    -H "Content-Type: application/json" \
    -d "{\"task_id_list\": [\"$TASK_ID\"]}")
  STATUS=$(echo "$RESULT" | jq -r '.data[0].status')
  if [ "$STATUS" = "1" ]; then break; fi
  if [ "$STATUS" = "2" ]; then echo "failed: $RESULT" >&2; exit 1; fi
  sleep 0.5
done
[ "$STATUS" = "1" ] || { echo "timed out" >&2; exit 1; }

N=0
for FILE in $(echo "$RESULT" | jq -r '.data[0].result | fromjson | .[].file'); do
  N=$((N + 1))
  curl -s "$API_URL$FILE" -o "$OUT_DIR/song_$N.mp3"
  echo "$OUT_DIR/song_$N.mp3"
done
