#pragma once
// Typed wrappers for libcurl's variadic curl_easy_setopt / curl_easy_getinfo,
// which Swift cannot call directly.
#include <curl/curl.h>
#include <stddef.h>

CURLcode flujo_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode flujo_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode flujo_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode flujo_curl_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value);
CURLcode flujo_curl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value);

/// The signature libcurl calls with received body bytes; `context` is CURLOPT_WRITEDATA.
typedef size_t (*flujo_curl_write_callback)(char *data, size_t size, size_t count, void *context);
CURLcode flujo_curl_setopt_write_function(CURL *handle, flujo_curl_write_callback callback);

CURLcode flujo_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
CURLcode flujo_curl_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value);

