/* Helpers the sessions and labs controllers share (not for other parts). */
#ifndef LCM_CTL_SESSIONS_INT_H
#define LCM_CTL_SESSIONS_INT_H

#include <stddef.h>

struct lcm_lab;
struct lcm_store;

/* The lab record of worker_id that holds CML lab cml_lab_id, or NULL (a scan of the labs). */
const struct lcm_lab *lcm_sessions_find_lab(const struct lcm_store *st, const char *worker_id,
                                            const char *cml_lab_id);
/* The id of the lab record a session creates when it imports its lab ("lab-<session id>"). */
void lcm_sessions_lab_record_id(const char *sid, char *out, size_t cap);
/* The CML title of that lab ("lcm-<session id>", at most 60 characters). */
void lcm_sessions_lab_title(const char *sid, char *out, size_t cap);

#endif
